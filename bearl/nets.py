"""Networks shared by the algorithms: MLPs, a batched Q ensemble, actors (tanh-Gaussian,
deterministic, IQL's Gaussian with a state-independent std, BCQ's perturbation model), a
state-value network, a VAE.

Speed notes. The Q ensemble is one module whose weights are stacked ``[N, in, out]``, so all N
critics run in one batched matmul (no Python loop over critics). Sampling K actions per state
from the Gaussian actor needs one forward pass per state, not K: the mean and std are computed
once and K noise draws are broadcast against them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# -- precision ------------------------------------------------------------------------------------
# ``--precision bf16``: the hidden layers' matrix multiplies (forward and backward) run in
# bfloat16 under autocast; every output layer, and so every Q-value, action mean and log-std,
# VAE output, loss, target and kernel sum after it, stays float32, as do the weights and Adam's
# state. A network's ``matmul_dtype`` is None (float32, the default) or torch.bfloat16; set it
# with ``set_matmul_dtype``.
MATMUL_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
"""``--precision`` -> the hidden layers' matmul dtype (None: float32)."""


def set_matmul_dtype(module: nn.Module, dtype: torch.dtype | None) -> None:
    """Hidden-layer matmuls of every network inside ``module`` in ``dtype`` (None: float32)."""
    for m in module.modules():
        if hasattr(m, "matmul_dtype"):
            m.matmul_dtype = dtype


def hidden_precision(dtype: torch.dtype | None, x: torch.Tensor):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(x.device.type, dtype=dtype)


def mlp_forward(seq: nn.Sequential, x: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``seq(x)``, its hidden layers in ``dtype`` and its output layer in float32."""
    if dtype is None:
        return seq(x)
    with torch.autocast(x.device.type, dtype=dtype):
        for layer in list(seq)[:-1]:
            x = layer(x)
    return seq[-1](x.float())


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden:
        layers += [nn.Linear(last, h), nn.ReLU()]
        last = h
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``n`` independent linear layers evaluated with one batched matmul.

    Weights are ``[n, in, out]`` and biases ``[n, 1, out]``; each member is initialised like
    ``nn.Linear`` (uniform in +-1/sqrt(in)). Input ``[B, in]`` (shared by all members) or
    ``[n, B, in]``; output ``[n, B, out]``.
    """

    def __init__(self, n: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(
            torch.empty(n, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(n, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, members: slice = slice(None)) -> torch.Tensor:
        """``members`` selects a contiguous subset of the ensemble (default: all)."""
        w, b = self.weight[members], self.bias[members]
        if w.shape[-1] == 1:
            # one output (a critic's last layer): multiply and sum is 3-5x faster on CPU than a
            # batched matmul with N=1, forward and backward (docs/performance.md)
            return (x * w.transpose(-1, -2)).sum(-1, keepdim=True) + b  # (ONNX has no mT)
        if x.dim() == 2:  # shared input: broadcast matmul [B,in] @ [n,in,out]
            return torch.matmul(x, w) + b
        return torch.baddbmm(b, x, w)


class EnsembleCritic(nn.Module):
    """``n`` Q-networks Q_i(s, a) in one module. ``forward`` returns ``[n, *act.shape[:-1]]``.

    ``obs`` either has the same batch shape as ``act`` or is shared by several actions:
    ``obs [B, S]`` or ``[B, 1, S]`` with ``act [B, K, A]``. Then the state's part of the first
    layer is computed once per state, not once per action (no copies of the state either).
    """

    matmul_dtype: torch.dtype | None = None

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], n: int = 2) -> None:
        super().__init__()
        self.n, self.obs_dim = n, obs_dim
        dims = [obs_dim + act_dim, *hidden]
        self.hidden = nn.ModuleList(EnsembleLinear(n, i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.out = EnsembleLinear(n, dims[-1], 1)

    def forward(
        self, obs: torch.Tensor, act: torch.Tensor, member: int | None = None
    ) -> torch.Tensor:
        """Q-values ``[n, *batch]``; with ``member=i`` only Q_i is computed, shape ``[*batch]``."""
        batch_shape = act.shape[:-1]
        sl = slice(None) if member is None else slice(member, member + 1)
        with hidden_precision(self.matmul_dtype, act):
            x = self._hidden(obs, act, sl)
        q = self.out(x.float(), sl)  # float32 (a no-op at float32)
        return q.reshape(*batch_shape) if member is not None else q.reshape(self.n, *batch_shape)

    def _hidden(self, obs: torch.Tensor, act: torch.Tensor, sl: slice) -> torch.Tensor:
        first = self.hidden[0]
        w, bias = first.weight[sl], first.bias[sl]
        o = obs.reshape(-1, self.obs_dim)  # distinct states [Bo, S]
        a = act.reshape(-1, act.shape[-1])  # [Ba, A]
        # the bias joins the (smaller) state part, so the big tensor sees one add and one relu
        h_obs = torch.matmul(o, w[:, : self.obs_dim]) + bias  # [n, Bo, h]
        h = torch.matmul(a, w[:, self.obs_dim :])  # [n, Ba, h]
        if o.shape[0] == a.shape[0]:
            x = h.add_(h_obs).relu_()
        else:  # each state is shared by Ba / Bo consecutive actions
            n, bo, width = h_obs.shape
            shared = h_obs.unsqueeze(2)
            if h.dtype == h_obs.dtype:
                # out of place, then viewed: in place on a view, autograd would clone the whole
                # [n, Ba, h] gradient (CopySlices) in every backward; the same numbers either way
                x = (h.view(n, bo, -1, width) + shared).relu_().view(n, -1, width)
            else:  # bf16 matmul + float32 bias: in place keeps the sum in h's dtype (its rounding)
                x = h.view(n, bo, -1, width).add_(shared).view(n, -1, width).relu_()
        for layer in self.hidden[1:]:
            x = layer(x, sl).relu_()
        return x


class TanhGaussianActor(nn.Module):
    """Gaussian policy squashed by tanh: ``a = tanh(mu(s) + sigma(s) * eps)`` in [-1, 1].

    Args:
        log_std_bounds: clamp of the log-std head (None: unclamped, as the original BEAR code).
    """

    matmul_dtype: torch.dtype | None = None

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        log_std_bounds: tuple[float, float] | None = (-5.0, 2.0),
    ) -> None:
        super().__init__()
        self.trunk = mlp(obs_dim, hidden[-1], hidden[:-1])
        self.mean = nn.Linear(hidden[-1], act_dim)
        self.log_std = nn.Linear(hidden[-1], act_dim)
        self.log_std_bounds = log_std_bounds

    def dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with hidden_precision(self.matmul_dtype, obs):  # the trunk is all hidden layers
            h = F.relu(self.trunk(obs))
        h = h.float()  # the two heads stay float32 (a no-op at float32)
        log_std = self.log_std(h)
        if self.log_std_bounds is not None:
            log_std = log_std.clamp(*self.log_std_bounds)
        return self.mean(h), log_std

    def sample(
        self, obs: torch.Tensor, n: int | None = None, noise_clip: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised samples ``(action, pre_tanh)``.

        With ``n``, returns ``[B, n, act_dim]``: n samples per state from ONE forward pass.
        ``noise_clip`` clips the standard-normal noise (the original BEAR used 0.5 in training).
        """
        return self._draw(*self.dist_params(obs), n, noise_clip)

    def log_prob(self, obs: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) for ``a = tanh(pre_tanh)``; ``obs`` broadcasts against ``pre_tanh``'s
        leading dims (``obs [B, S]`` with ``pre_tanh [B, n, A]`` is allowed)."""
        return self._log_prob(*self.dist_params(obs), pre_tanh)

    def sample_log_prob(
        self, obs: torch.Tensor, n: int | None = None, noise_clip: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(action, log pi(action|s))`` from one forward pass: what :meth:`sample` then
        :meth:`log_prob` give, without running the network twice."""
        mean, log_std = self.dist_params(obs)
        action, pre_tanh = self._draw(mean, log_std, n, noise_clip)
        return action, self._log_prob(mean, log_std, pre_tanh)

    @staticmethod
    def _draw(
        mean: torch.Tensor, log_std: torch.Tensor, n: int | None, noise_clip: float | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if n is not None:
            mean, log_std = mean.unsqueeze(-2), log_std.unsqueeze(-2)
            eps = torch.randn(
                *mean.shape[:-2], n, mean.shape[-1], device=mean.device, dtype=mean.dtype
            )
        else:
            eps = torch.randn_like(mean)
        if noise_clip is not None:
            eps = eps.clamp(-noise_clip, noise_clip)
        pre_tanh = mean + log_std.exp() * eps
        return torch.tanh(pre_tanh), pre_tanh

    @staticmethod
    def _log_prob(
        mean: torch.Tensor, log_std: torch.Tensor, pre_tanh: torch.Tensor
    ) -> torch.Tensor:
        if pre_tanh.dim() == mean.dim() + 1:
            mean, log_std = mean.unsqueeze(-2), log_std.unsqueeze(-2)
        z = (pre_tanh - mean) / log_std.exp()
        gauss = (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), stable form
        squash = (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
        return gauss - squash

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The squashed mean action ``tanh(mu(s))``."""
        return torch.tanh(self.dist_params(obs)[0])


class DeterministicActor(nn.Module):
    """``a = tanh(f(s))`` in [-1, 1] (TD3, DQfD)."""

    matmul_dtype: torch.dtype | None = None

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(mlp_forward(self.net, obs, self.matmul_dtype))


class GaussianActor(nn.Module):
    """Gaussian policy ``N(tanh(f(s)), diag(exp(log_std))^2)`` with a state-independent log-std
    (one learned parameter per action dimension, clamped to ``log_std_bounds``): IQL's policy,
    as its authors' code has it. The mean is squashed, the distribution is not, so ``log_prob``
    of a dataset action needs no atanh; samples are clamped to [-1, 1]."""

    matmul_dtype: torch.dtype | None = None

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256),
        log_std_bounds: tuple[float, float] | None = (-5.0, 2.0),
        init_log_std: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))
        self.log_std_bounds = log_std_bounds

    def clamped_log_std(self) -> torch.Tensor:
        """The log-std ``[act_dim]`` after the clamp (no gradient outside the bounds)."""
        if self.log_std_bounds is None:
            return self.log_std
        return self.log_std.clamp(*self.log_std_bounds)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action ``tanh(f(s))``."""
        return torch.tanh(mlp_forward(self.net, obs, self.matmul_dtype))

    def log_prob(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) ``[*batch]`` of actions ``act`` (in [-1, 1]) under the unsquashed
        Gaussian."""
        mean, log_std = self.deterministic(obs), self.clamped_log_std()
        z = (act - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        """One sample per state, clamped to [-1, 1]."""
        mean = self.deterministic(obs)
        noise = torch.randn_like(mean) * self.clamped_log_std().exp()
        return (mean + noise).clamp(-1.0, 1.0)


class ValueNet(nn.Module):
    """A state-value function V(s) (IQL): an MLP with one output, returned as ``[*batch]``."""

    matmul_dtype: torch.dtype | None = None

    def __init__(self, obs_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return mlp_forward(self.net, obs, self.matmul_dtype).squeeze(-1)


class PerturbationActor(nn.Module):
    """BCQ's perturbation model: ``clamp(a + phi * tanh(f(s, a)), -1, 1)``.

    Each output lies within ``phi`` of its input action (the clamp only moves it towards the
    input, which is already in [-1, 1]). ``obs [B, S]`` broadcasts against ``act [B, K, A]``.
    """

    matmul_dtype: torch.dtype | None = None

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (400, 300), phi: float = 0.05
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim + act_dim, act_dim, hidden)
        self.phi = phi

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        if obs.dim() < act.dim():
            obs = obs.unsqueeze(-2).expand(*act.shape[:-1], obs.shape[-1])
        xi = self.phi * torch.tanh(
            mlp_forward(self.net, torch.cat([obs, act], -1), self.matmul_dtype)
        )
        return (act + xi).clamp(-1.0, 1.0)


class VAE(nn.Module):
    """Conditional VAE of the behaviour policy (BCQ / BEAR): encoder q(z|s,a), decoder p(a|s,z).

    Latent size defaults to ``2 * act_dim``; the encoder log-std is clamped to [-4, 15] and
    prior samples are clipped to +-``latent_clip`` (0.5), as in BCQ and BEAR. ``kl_weight``
    weighs the KL term of the loss (0.5 in BCQ and BEAR); at 0.5 the posterior collapses to the
    prior on data whose actions vary little per state, and the decoder ignores z
    (studies/bear_200k/README.md, "The behaviour model is a point per state").
    """

    matmul_dtype: torch.dtype | None = None

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (750, 750),
        latent_dim: int | None = None,
        latent_clip: float = 0.5,
        kl_weight: float = 0.5,
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim or 2 * act_dim
        self.latent_clip = latent_clip
        self.kl_weight = float(kl_weight)
        self.encoder = mlp(obs_dim + act_dim, 2 * self.latent_dim, hidden)
        self.decoder = mlp(obs_dim + self.latent_dim, act_dim, hidden)

    def forward(self, obs: torch.Tensor, act: torch.Tensor):
        """Returns ``(reconstruction, mean, std)`` for the ELBO."""
        enc = mlp_forward(self.encoder, torch.cat([obs, act], -1), self.matmul_dtype)
        mean, log_std = enc.chunk(2, -1)
        std = log_std.clamp(-4.0, 15.0).exp()
        z = mean + std * torch.randn_like(std)
        return self.decode(obs, z)[0], mean, std

    def loss(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Reconstruction MSE + ``kl_weight`` * KL(q(z|s,a) || N(0, I)), both averaged over
        their elements (as BCQ/BEAR, whose weight is 0.5)."""
        recon, mean, std = self(obs, act)
        kl = -0.5 * (1 + torch.log(std.pow(2)) - mean.pow(2) - std.pow(2)).mean()
        return F.mse_loss(recon, act) + self.kl_weight * kl

    def decode(
        self, obs: torch.Tensor, z: torch.Tensor | None = None, n: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded actions ``(tanh(out), out)``; without ``z``, z ~ N(0, I) clipped to
        +-latent_clip.

        With ``n``, draws n latents per state and returns ``[B, n, act_dim]``.
        """
        if z is None:
            shape = (
                (*obs.shape[:-1], n, self.latent_dim) if n else (*obs.shape[:-1], self.latent_dim)
            )
            z = torch.randn(shape, device=obs.device, dtype=obs.dtype)
            z = z.clamp(-self.latent_clip, self.latent_clip)
        if z.dim() == obs.dim() + 1:
            obs = obs.unsqueeze(-2).expand(*z.shape[:-1], obs.shape[-1])
        out = mlp_forward(self.decoder, torch.cat([obs, z], -1), self.matmul_dtype)
        return torch.tanh(out), out


class ObsNormalizer(nn.Module):
    """Per-dimension state normalisation ``(s - mean) / std`` with the dataset's statistics
    (TD3+BC). Mean and std are buffers, so checkpoints keep them and an action rule that calls
    this module carries them into the exported policy. Identity until ``fit``."""

    def __init__(self, obs_dim: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def fit(self, observations) -> None:
        """Set mean and std (+ eps) from an array of observations ``[N, obs_dim]``."""
        x = torch.as_tensor(observations, dtype=torch.float64).reshape(-1, self.mean.numel())
        with torch.no_grad():
            self.mean.copy_(x.mean(0))
            self.std.copy_(x.std(0, unbiased=False) + self.eps)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std


# -- action rules shared by several algorithms ----------------------------------------------------
# An action rule is a module over an algorithm's live networks mapping observations [B, S] to
# actions [B, A] in [-1, 1]; ``act`` runs it and ``bearl export`` traces it (so it uses only
# traceable ops: no Python branches on tensor values). ``description`` says what it computes.
class MeanAction(nn.Module):
    """The squashed mean action tanh(mu(s)) of a tanh-Gaussian actor."""

    description = "the mean action tanh(mu(s))"

    def __init__(self, actor: TanhGaussianActor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.deterministic(obs)


class SampledAction(nn.Module):
    """One sample tanh(mu(s) + sigma(s) * eps), eps ~ N(0, I), of a tanh-Gaussian actor."""

    description = "one sample of the tanh-Gaussian policy (random)"

    def __init__(self, actor: TanhGaussianActor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.sample(obs)[0]


class ActorAction(nn.Module):
    """The deterministic actor's action tanh(f(s))."""

    description = "the deterministic actor tanh(f(s))"

    def __init__(self, actor: DeterministicActor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)


def pick_best(cand: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """cand [B, K, A], q [B, K] -> the candidate with the highest q per state, [B, A]."""
    best = q.argmax(-1).unsqueeze(-1).unsqueeze(-1)  # [B, 1, 1]
    return cand.gather(1, best.expand(-1, 1, cand.shape[-1])).squeeze(1)
