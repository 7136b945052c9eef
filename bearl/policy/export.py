"""Export a trained policy as a self-contained TorchScript or ONNX file.

The exported module maps a batch of observations ``obs [B, obs_dim]`` (float32) to actions
``[B, act_dim]`` in the environment's bounds; running it needs torch (TorchScript) or an ONNX
runtime, not bearl. It is built from copies of the trained networks (actor, critic, VAE) and
does the algorithm's action selection in plain torch ops, then the observation normalization
hook (none today) before the networks and the rescale to the env's bounds after them, exactly
as :class:`bearl.policy.load.Policy` does.

By default the module does the algorithm's own action selection, randomness included, drawn
inside the graph (``torch.randn_like``; ONNX: ``RandomNormalLike``). BEAR's, for instance,
samples ``num_eval_samples`` actions per state from its tanh-Gaussian actor and returns the one
with the highest Q_1 (only the first critic of the ensemble is exported). With
``deterministic=True`` it is the algorithm's deterministic variant (BEAR, KL-Control: the mean
action tanh(mu(s)); BCQ, BC-vae: the VAE decoding of the latent z = 0; TD3, DQfD, BC-gaussian,
BC-deterministic: their action, which has no randomness either way).

An algorithm added later can provide ``export_selector(deterministic) -> nn.Module`` (a
module mapping observations to actions in [-1, 1] with TorchScript-compatible code) to be
exportable; the built-in ones are mapped in :func:`selector`.
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bearl.errors import BearlError

EXPORT_FORMAT = "bearl-exported-policy-v1"
FORMATS = ("torchscript", "onnx")


# -- building blocks (TorchScript-compatible, ONNX-traceable) --------------------------------------
def _frozen(module: nn.Module) -> nn.Module:
    m = copy.deepcopy(module).cpu().float().eval()
    m.requires_grad_(False)
    return m


def q1_network(critic: nn.Module) -> nn.Sequential:
    """The first member of an ``EnsembleCritic`` as ``nn.Linear`` layers on ``[obs, act]``."""
    layers: list[nn.Module] = []
    for lin in list(critic.hidden) + [critic.out]:
        w = lin.weight[0].detach().cpu().float()  # [in, out]
        layer = nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            layer.weight.copy_(w.t())
            layer.bias.copy_(lin.bias[0, 0].detach().cpu().float())
        layers += [layer, nn.ReLU()]
    return _frozen(nn.Sequential(*layers[:-1]))


class GaussianMean(nn.Module):
    """tanh(mu(s)) of a ``TanhGaussianActor``."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.trunk = _frozen(actor.trunk)
        self.mean = _frozen(actor.mean)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mean(torch.relu(self.trunk(obs))))


class _Gaussian(nn.Module):
    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.trunk = _frozen(actor.trunk)
        self.mean = _frozen(actor.mean)
        self.log_std = _frozen(actor.log_std)
        bounds = actor.log_std_bounds
        self.clamp_log_std = bounds is not None
        self.log_std_min = float(bounds[0]) if bounds is not None else 0.0
        self.log_std_max = float(bounds[1]) if bounds is not None else 0.0

    def params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.trunk(obs))
        log_std = self.log_std(h)
        if self.clamp_log_std:
            log_std = log_std.clamp(self.log_std_min, self.log_std_max)
        return self.mean(h), log_std


class GaussianSample(_Gaussian):
    """One sample tanh(mu(s) + sigma(s) * eps), eps ~ N(0, I)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.params(obs)
        return torch.tanh(mean + log_std.exp() * torch.randn_like(mean))


def _pick_best(cand: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """cand [B, K, A], q [B, K] -> the candidate with the highest q per state [B, A]."""
    best = q.argmax(-1).unsqueeze(-1).unsqueeze(-1)  # [B, 1, 1]
    return cand.gather(1, best.expand(-1, 1, cand.shape[-1])).squeeze(1)


class GaussianArgmaxQ(_Gaussian):
    """BEAR's rule: ``k`` samples per state, the one with the highest Q_1."""

    def __init__(self, actor: nn.Module, critic: nn.Module, k: int) -> None:
        super().__init__(actor)
        self.q1 = q1_network(critic)
        self.k = int(k)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean, log_std = self.params(obs)
        mean_k = mean.unsqueeze(1).expand(-1, self.k, -1)  # [B, K, A]
        eps = torch.randn_like(mean_k)
        cand = torch.tanh(mean_k + log_std.exp().unsqueeze(1) * eps)
        obs_k = obs.unsqueeze(1).expand(-1, self.k, -1)
        q = self.q1(torch.cat([obs_k, cand], -1)).squeeze(-1)  # [B, K]
        return _pick_best(cand, q)


class TanhMLP(nn.Module):
    """tanh(f(s)) of a ``DeterministicActor`` (TD3, DQfD, BC-deterministic)."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.net = _frozen(actor.net)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class VAEDecode(nn.Module):
    """BC-vae: decode z = 0 (deterministic) or z ~ N(0, I) clipped to +-``clip``."""

    def __init__(self, vae: nn.Module, clip: float, deterministic: bool) -> None:
        super().__init__()
        self.decoder = _frozen(vae.decoder)
        self.latent_dim = int(vae.latent_dim)
        self.clip = float(clip)
        self.deterministic = bool(deterministic)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = torch.zeros_like(obs[:, :1]).expand(-1, self.latent_dim)
        if not self.deterministic:
            z = torch.randn_like(z).clamp(-self.clip, self.clip)
        return torch.tanh(self.decoder(torch.cat([obs, z], -1)))


class BCQSelect(nn.Module):
    """BCQ: perturbed VAE actions; ``k`` random ones and the argmax of Q_1, or the perturbed
    decoding of z = 0 (deterministic)."""

    def __init__(self, vae: nn.Module, actor: nn.Module, critic: nn.Module, k: int, det: bool):
        super().__init__()
        self.decoder = _frozen(vae.decoder)
        self.latent_dim = int(vae.latent_dim)
        self.latent_clip = float(vae.latent_clip)
        self.perturb = _frozen(actor.net)
        self.phi = float(actor.phi)
        self.q1 = q1_network(critic)
        self.k = int(k)
        self.deterministic = bool(det)

    def perturbed(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        xi = self.phi * torch.tanh(self.perturb(torch.cat([obs, act], -1)))
        return (act + xi).clamp(-1.0, 1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.deterministic:
            z = torch.zeros_like(obs[:, :1]).expand(-1, self.latent_dim)
            return self.perturbed(obs, torch.tanh(self.decoder(torch.cat([obs, z], -1))))
        zeros = torch.zeros_like(obs[:, :1]).unsqueeze(1).expand(-1, self.k, self.latent_dim)
        z = torch.randn_like(zeros).clamp(-self.latent_clip, self.latent_clip)  # [B, K, L]
        obs_k = obs.unsqueeze(1).expand(-1, self.k, -1)
        cand = self.perturbed(obs_k, torch.tanh(self.decoder(torch.cat([obs_k, z], -1))))
        q = self.q1(torch.cat([obs_k, cand], -1)).squeeze(-1)  # [B, K]
        return _pick_best(cand, q)


class ExportedPolicy(nn.Module):
    """observations -> (normalization hook) -> action selection in [-1, 1] -> env bounds."""

    def __init__(
        self,
        select: nn.Module,
        obs_dim: int,
        center: np.ndarray | None,
        half: np.ndarray | None,
        obs_shift: np.ndarray | None = None,
        obs_scale: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.select = select
        self.obs_dim = int(obs_dim)
        self.rescale = center is not None
        self.normalize = obs_shift is not None or obs_scale is not None

        def buf(x: np.ndarray | None, fill: float, n: int) -> torch.Tensor:
            return torch.as_tensor(np.full(n, fill) if x is None else x, dtype=torch.float32)

        n_act = len(center) if center is not None else 1
        self.register_buffer("action_center", buf(center, 0.0, n_act))
        self.register_buffer("action_scale", buf(half, 1.0, n_act))
        self.register_buffer("obs_shift", buf(obs_shift, 0.0, self.obs_dim))
        self.register_buffer("obs_scale", buf(obs_scale, 1.0, self.obs_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if self.normalize:
            x = (x - self.obs_shift) / self.obs_scale
        a = self.select(x)
        if self.rescale:
            a = a * self.action_scale + self.action_center
        return a


# -- per algorithm -------------------------------------------------------------------------------
DESCRIPTIONS = {
    GaussianMean: "the mean action tanh(mu(s))",
    GaussianSample: "one sample of the tanh-Gaussian policy",
    GaussianArgmaxQ: "argmax of Q_1 over {k} tanh-Gaussian samples per state (random)",
    TanhMLP: "the deterministic actor tanh(f(s))",
}


def selector(algo: Any, deterministic: bool = False) -> nn.Module:
    """The module doing ``algo``'s action selection (actions in [-1, 1])."""
    if hasattr(algo, "export_selector"):
        return algo.export_selector(deterministic)
    name, c = algo.name, algo.cfg
    if name == "BEAR":
        if deterministic:
            return GaussianMean(algo.actor)
        return GaussianArgmaxQ(algo.actor, algo.critic, c.num_eval_samples)
    if name == "KLControl":
        return GaussianMean(algo.actor) if deterministic else GaussianSample(algo.actor)
    if name == "BCQ":
        return BCQSelect(algo.vae, algo.actor, algo.critic, c.num_eval_samples, deterministic)
    if name in ("TD3", "DQfD"):
        return TanhMLP(algo.actor)
    if name == "BC":
        if c.bc_type == "vae":
            return VAEDecode(algo.policy, c.latent_clip_eval, deterministic)
        if c.bc_type == "gaussian":
            return GaussianMean(algo.policy)
        return TanhMLP(algo.policy)
    raise BearlError(
        f"export does not know how {name} selects actions; give the algorithm an "
        "export_selector(deterministic) method (see bearl/export.py)"
    )


def describe(select: nn.Module) -> str:
    """One line saying what the exported module computes."""
    if isinstance(select, BCQSelect):
        if select.deterministic:
            return "the perturbed VAE decoding of z = 0"
        return f"argmax of Q_1 over {select.k} perturbed VAE samples per state (random)"
    if isinstance(select, VAEDecode):
        if select.deterministic:
            return "the VAE decoding of z = 0"
        return f"the VAE decoding of z ~ N(0, I) clipped to +-{select.clip:g} (random)"
    text = DESCRIPTIONS.get(type(select), type(select).__name__)
    return text.format(k=getattr(select, "k", "?"))


def build_module(policy: Any, deterministic: bool = False) -> ExportedPolicy:
    """An ``nn.Module`` doing what ``policy.act(obs, deterministic)`` does, on the CPU."""
    center = half = None
    if policy.rescale:
        low = np.asarray(policy.action_low, dtype=np.float64)
        high = np.asarray(policy.action_high, dtype=np.float64)
        center, half = (high + low) / 2, (high - low) / 2
    module = ExportedPolicy(
        selector(policy.algo, deterministic),
        policy.obs_dim,
        center,
        half,
        policy.obs_shift,
        policy.obs_scale,
    )
    return module.eval()


def _floats(x: np.ndarray | None) -> list[float] | None:
    return None if x is None else [float(v) for v in np.asarray(x).reshape(-1)]


def metadata(policy: Any, module: ExportedPolicy, fmt: str, deterministic: bool) -> dict[str, Any]:
    from bearl import __version__

    return {
        "format": EXPORT_FORMAT,
        "file_format": fmt,
        "algo": policy.algo.name,
        "env": policy.env_name,
        "obs_dim": policy.obs_dim,
        "act_dim": policy.act_dim,
        "input": f"obs: float32 [batch, {policy.obs_dim}]",
        "output": f"action: float32 [batch, {policy.act_dim}] in the env's action bounds",
        "action_low": _floats(policy.action_low),
        "action_high": _floats(policy.action_high),
        "deterministic": deterministic,
        "selection": describe(module.select),
        "step": policy.step,
        "checkpoint": str(policy.checkpoint_path),
        "bearl_version": __version__,
    }


def export_policy(
    policy: Any, path: str | Path, fmt: str = "torchscript", deterministic: bool = False
) -> dict[str, Any]:
    """Write ``policy`` to ``path`` as ``torchscript`` or ``onnx``; returns its metadata (also
    stored in the file: TorchScript extra file ``bearl.json``, ONNX metadata_props)."""
    if fmt not in FORMATS:
        raise BearlError(f"unknown export format '{fmt}' (choose {' or '.join(FORMATS)})")
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise BearlError(f"{path.parent}: no such folder")
    module = build_module(policy, deterministic)
    meta = metadata(policy, module, fmt, deterministic)
    example = torch.zeros(2, policy.obs_dim)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            # torch >= 2.10 marks TorchScript deprecated; it still works and needs no Python
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(module)
            out = scripted(example)
            if tuple(out.shape) != (2, policy.act_dim):  # pragma: no cover - a selector bug
                raise BearlError(f"exported module gives shape {tuple(out.shape)}")
            torch.jit.save(scripted, str(path), _extra_files={"bearl.json": json.dumps(meta)})
    else:
        _export_onnx(module, example, path, meta)
    return meta


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path, meta: dict) -> None:
    try:
        import onnx
    except ImportError:
        raise BearlError(
            "ONNX export needs the onnx package: pip install 'bearl[export]' "
            "(onnx, and onnxruntime to run the file)"
        ) from None
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {
        "input_names": ["obs"],
        "output_names": ["action"],
        "opset_version": 17,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        try:
            torch.onnx.export(
                module,
                (example,),
                buf,
                dynamo=False,
                dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                **kwargs,
            )
        except TypeError:  # pragma: no cover - a torch without the TorchScript-based exporter
            try:
                prog = torch.onnx.export(
                    module,
                    (example,),
                    dynamo=True,
                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                    **kwargs,
                )
            except ImportError as e:
                raise BearlError(f"ONNX export with this torch needs onnxscript ({e})") from None
            buf.write(prog.model_proto.SerializeToString())
    model = onnx.load_from_string(buf.getvalue())
    model.doc_string = f"bearl {meta['algo']} policy: {meta['selection']}"
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, json.dumps(v) if not isinstance(v, str) else v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
