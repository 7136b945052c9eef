"""Fitted Q Evaluation (Le, Voloshin & Yue, ICML 2019) of many policies at once.

FQE fits Q^pi to a fixed dataset by regressing Q(s, a) on r + gamma * (1 - d) * Q'(s', a'),
a' ~ pi(s') drawn with the policy's own action rule, Q' a slowly following target network. The
policy's value is then the mean of Q(s0, pi(s0)) over the dataset's episode starts.

The critics of every policy (a run's snapshots, or the snapshots of several runs on one dataset)
train together as one batched ensemble of small MLPs: one minibatch, one matmul per layer for
all of them. Each policy gets ``heads`` critics, each fitted to its own bootstrap resample of the
dataset's episodes (Poisson(1) weights per episode, the same for every policy, so that policies
are compared on the same resamples); the spread of the heads' estimates gives the interval.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bearl.data.dataset import Dataset
from bearl.errors import CheckpointError, ConfigError
from bearl.nets import MATMUL_DTYPES, EnsembleLinear, hidden_precision, set_matmul_dtype
from bearl.progress import StepBar, progress_bar
from bearl.training.checkpoint import load_checkpoint, save_checkpoint


@dataclass
class FQEConfig:
    """Settings of the FQE fit (defaults chosen from measurements: studies/offline_selection)."""

    steps: int = 15_000
    """Gradient steps of every critic."""
    batch_size: int = 256
    """Transitions per minibatch (the same minibatch for every critic)."""
    hidden: tuple[int, ...] = (128, 128)
    """Hidden layer widths of each critic."""
    lr: float = 3e-4
    """Adam learning rate."""
    tau: float = 0.05
    """Soft update rate of the target critics."""
    gamma: float | None = None
    """Discount; None: the run's own ``gamma``."""
    heads: int = 3
    """Critics per policy, each on its own bootstrap resample of the episodes (1: no interval)."""
    init_mean: bool = True
    """Start every critic's output at the data's mean reward / (1 - gamma) instead of about 0,
    so that fewer backups are needed to reach values of that size."""
    start_samples: int = 10
    """Actions drawn per episode start for the estimate (the action rule may be random)."""
    seed: int = 0
    """Seed of the critics' initialisation, the resamples and the minibatches."""
    precision: str = "fp32"
    """Matmul precision of the critics' hidden layers: ``fp32`` or ``bf16`` (the targets, the
    loss, the output layer and the estimate stay float32; fast only where bf16 is native)."""
    next_actions: str = "table"
    """How a' ~ pi(s') is drawn: ``table``, once per transition before fitting (one pass of
    the rule over the dataset instead of steps * batch_size draws: 1M against 3.84M at the
    defaults on a medium dataset); ``fresh``, anew in every minibatch (the textbook form; always
    so for the training-time FQE curve, whose policy changes)."""

    def __post_init__(self) -> None:
        if self.precision not in MATMUL_DTYPES:
            raise ConfigError(f"--precision: expected fp32 or bf16, got '{self.precision}'")
        if self.next_actions not in NEXT_ACTIONS:
            raise ConfigError(f"--next_actions: expected table or fresh, got '{self.next_actions}'")


NEXT_ACTIONS = ("table", "fresh")
TABLE_CHUNK = 1024  # rows per pass of the rule while drawing the table (bounds its memory)


class FQECritics(nn.Module):
    """``n`` independent MLP critics Q_i(s, a); inputs shared ``[B, S+A]`` or per critic
    ``[n, B, S+A]``; output ``[n, B]`` in float32 (hidden layers in ``matmul_dtype``)."""

    matmul_dtype: torch.dtype | None = None

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        dims = [in_dim, *hidden]
        self.layers = nn.ModuleList(EnsembleLinear(n, i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.out = EnsembleLinear(n, dims[-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with hidden_precision(self.matmul_dtype, x):
            for layer in self.layers:
                x = layer(x).relu_()
        return self.out(x.float()).squeeze(-1)  # (x.float() is a no-op at float32)


@dataclass
class FQEResult:
    """Per policy: the estimate (mean over heads), its interval, and each head's estimate;
    discounted returns at the dataset's episode starts."""

    estimate: np.ndarray
    low: np.ndarray
    high: np.ndarray
    heads: np.ndarray  # [policies, heads]
    seconds: float
    steps: int
    trace: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (step, estimates)
    cpu_seconds: float = 0.0  # the process's CPU time in the fit: core-seconds, whatever shares


Rule = Callable[[torch.Tensor], torch.Tensor]


class FQE:
    """The critics of ``policies`` policies (``heads`` each) on ``dataset``, fitted in rounds
    (:meth:`fit`), estimated at the episode starts (:meth:`values`). Its random streams (the
    critics' initialisation, the resamples, the minibatches and the policies' sampled actions)
    are its own, seeded with ``cfg.seed``: fitting changes no caller's RNG, and its
    :meth:`state_dict` goes on exactly after a resume."""

    def __init__(
        self, policies: int, dataset: Dataset, cfg: FQEConfig, gamma: float, device="cpu"
    ) -> None:
        self.device, self.cfg, self.gamma, self.dataset = torch.device(device), cfg, gamma, dataset
        self.p, self.h = policies, max(1, int(cfg.heads))
        n = self.p * self.h
        with self._own_rng(restore=False):  # the policies' sampling goes on from here
            torch.manual_seed(cfg.seed)
            self.critic = FQECritics(n, dataset.obs_dim + dataset.act_dim, cfg.hidden)
            if cfg.init_mean:
                with torch.no_grad():
                    self.critic.out.bias.fill_(float(np.mean(dataset.rewards)) / (1 - gamma))
            self.critic.to(self.device)
            set_matmul_dtype(self.critic, MATMUL_DTYPES[cfg.precision])
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        self.opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)
        self.gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.weights = _bootstrap_weights(dataset.num_episodes, self.h, self.gen).to(self.device)
        self.sampler = dataset.sampler(cfg.batch_size, self.device, seed=cfg.seed)
        self.episode = torch.as_tensor(_episode_of_rows(dataset), device=self.device)
        self.steps = 0

    @contextmanager
    def _own_rng(self, restore: bool = True) -> Iterator[None]:
        """Run on this FQE's torch RNG stream (kept in ``self.rng``), not the caller's."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if restore:
                torch.random.set_rng_state(self.rng)
            yield
            self.rng = torch.random.get_rng_state()

    @torch.no_grad()
    def action_table(self, rules: Sequence[Rule], progress: bool = False) -> torch.Tensor:
        """Each policy's action at every transition's next state, drawn once: ``[p, N, A]``."""
        obs, n = self.dataset.next_observations, len(self.dataset)
        table = torch.empty(len(rules), n, self.dataset.act_dim, device=self.device)
        bar = progress_bar(n * len(rules), not progress, desc="FQE: next actions", unit="row")
        with self._own_rng(), bar:
            for i, rule in enumerate(rules):
                for lo in range(0, n, TABLE_CHUNK):
                    s = torch.as_tensor(obs[lo : lo + TABLE_CHUNK], device=self.device)
                    table[i, lo : lo + len(s)] = rule(s)
                    bar.update(len(s))
        return table

    def fit(
        self,
        rules: Sequence[Rule],
        steps: int,
        bar: StepBar | None = None,
        trace_every: int = 0,
        table: torch.Tensor | None = None,
    ):
        """``steps`` more gradient steps of every critic against ``rules`` (one per policy),
        their next actions drawn anew or looked up in ``table`` (:meth:`action_table`); with
        ``trace_every``, the estimates every that many steps: ``[(step, [p])]``."""
        p, h, n, cfg = self.p, self.h, self.p * self.h, self.cfg
        trace: list[tuple[int, np.ndarray]] = []
        with self._own_rng():
            for step in range(1, steps + 1):
                idx = torch.randint(len(self.dataset), (cfg.batch_size,), generator=self.gen)
                idx = idx.to(self.device)
                b = self.sampler.rows(idx)
                with torch.no_grad():
                    if table is not None:
                        nxt = table[:, idx]  # [p, B, A]
                    else:
                        nxt = torch.stack([rule(b.next_observations) for rule in rules])
                    nxt = nxt.repeat_interleave(h, dim=0)  # [n, B, A]: policy-major, heads inside
                    s2 = b.next_observations.expand(n, -1, -1)
                    q2 = self.target(torch.cat([s2, nxt], -1))
                    y = b.rewards + self.gamma * (1.0 - b.terminals) * q2  # [n, B]
                    w = self.weights[:, self.episode[idx]].repeat(p, 1)  # [n, B]
                q = self.critic(torch.cat([b.observations, b.actions], -1))  # shared -> [n, B]
                loss = (w * (q - y).pow(2)).mean(1).sum()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                with torch.no_grad():
                    for t, c in zip(self.target.parameters(), self.critic.parameters()):
                        t.lerp_(c, cfg.tau)
                at = self.steps + step  # counted over every call: the trace and bar go on
                if bar is not None and (step % 100 == 0 or step == steps):
                    bar.advance(at)
                if trace_every and at % trace_every == 0:
                    trace.append((at, self._values(rules).mean(1)))
        self.steps += steps
        return trace

    def values(self, rules: Sequence[Rule]) -> np.ndarray:
        """Each critic's mean of Q(s0, a0) over the episode starts, a0 drawn ``start_samples``
        times by the policy's rule: ``[p, heads]``."""
        with self._own_rng():
            return self._values(rules)

    def _values(self, rules):
        return _start_values(
            self.critic, rules, self.dataset, self.cfg.start_samples, self.h, self.device
        )

    def state_dict(self) -> dict:
        return {
            "critic": self.critic.state_dict(),
            "target": self.target.state_dict(),
            "opt": self.opt.state_dict(),
            "gen": self.gen.get_state(),
            "rng": self.rng,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.target.load_state_dict(state["target"])
        self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["gen"])
        self.rng, self.steps = state["rng"], int(state["steps"])


# FQE steps between checkpoints: 5 snapshots' is 2.3 MiB, written in 10 ms, 1,000 steps ~15 s
CHECKPOINT_EVERY = 1000


def fit_fqe(
    rules: Sequence[Rule],
    dataset: Dataset,
    cfg: FQEConfig,
    gamma: float,
    progress: bool = False,
    device: str | torch.device = "cpu",
    trace_every: int = 0,
    checkpoint: Path | None = None,
    key: dict[str, Any] | None = None,
) -> FQEResult:
    """FQE of every policy in ``rules`` (each maps observations ``[B, S]`` to actions ``[B, A]``
    in the dataset's action space) on ``dataset``; returns the value at its episode starts
    (and, with ``trace_every``, the estimates every that many steps, to see them converge).

    With ``checkpoint``, the fit is saved there every :data:`CHECKPOINT_EVERY` steps (and its
    next-action table once, in :func:`table_path`) and goes on from the files left by an
    interrupted fit of the same policies (``key``: what names them), data and settings, to
    the same result as a fit without a break; the caller removes them once it has the result."""
    fqe = FQE(len(rules), dataset, cfg, gamma, device)
    t0, c0 = time.perf_counter(), time.process_time()
    ident = _fit_identity(cfg, gamma, len(rules), dataset, key) if checkpoint else ""
    table = _action_table(fqe, rules, progress, checkpoint, ident)
    earlier = {"seconds": 0.0, "cpu_seconds": 0.0, "trace": []}
    if checkpoint is not None and Path(checkpoint).exists():
        earlier = _resume(fqe, Path(checkpoint), ident, cfg.steps) or earlier
    trace = [(int(at), np.asarray(v)) for at, v in earlier["trace"]]
    bar = StepBar(cfg.steps, fqe.steps, f"FQE of {len(rules)} policies", disable=not progress)
    every = CHECKPOINT_EVERY if checkpoint is not None else cfg.steps
    while fqe.steps < cfg.steps:
        n = min(cfg.steps - fqe.steps, every - fqe.steps % every)
        trace += fqe.fit(rules, n, bar, trace_every, table)
        if checkpoint is not None:
            spent = {
                "seconds": earlier["seconds"] + time.perf_counter() - t0,
                "cpu_seconds": earlier["cpu_seconds"] + time.process_time() - c0,
                "trace": [[at, v.tolist()] for at, v in trace],
            }
            save_checkpoint(Path(checkpoint), {"fqe_fit": ident, "fqe": fqe.state_dict(), **spent})
    bar.finish()
    seconds = earlier["seconds"] + time.perf_counter() - t0
    cpu = earlier["cpu_seconds"] + time.process_time() - c0
    per_head = fqe.values(rules)
    est, low, high = interval(per_head)
    return FQEResult(est, low, high, per_head, seconds, cfg.steps, trace, cpu)


def _action_table(fqe: FQE, rules, progress: bool, checkpoint: Path | None, ident: str):
    """The next-action table (None for fresh draws), kept beside ``checkpoint`` once drawn (the
    draw is most of BEAR's and BCQ's fit) and read from there by a fit that goes on."""
    if fqe.cfg.next_actions != "table":
        return None
    path = None if checkpoint is None else table_path(checkpoint)
    if path is not None and path.exists():
        try:
            saved = load_checkpoint(path)
        except CheckpointError:
            saved = {}
        if saved.get("fqe_fit") == ident:
            print(f"FQE: next actions from {path}", file=sys.stderr)
            fqe.rng = saved["rng"]  # as after drawing them
            return saved["table"].to(fqe.device)
    table = fqe.action_table(rules, progress)
    if path is not None:
        save_checkpoint(path, {"fqe_fit": ident, "table": table, "rng": fqe.rng})
    return table


def table_path(checkpoint: Path) -> Path:
    """Where the fit checkpointed in ``checkpoint`` keeps its next-action table."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}_table{checkpoint.suffix}")


def _fit_identity(cfg: FQEConfig, gamma: float, policies: int, data: Dataset, key) -> str:
    """What a checkpoint must match to be gone on from: every setting but ``steps`` (a shorter
    fit's state is a longer one's at that step), the discount, the data and the policies."""
    settings = {k: v for k, v in asdict(cfg).items() if k != "steps"}
    ident = {"settings": settings, "gamma": gamma, "policies": policies, "data": data.digest()}
    return json.dumps({**ident, "key": key}, sort_keys=True, default=str)


def _resume(fqe: FQE, path: Path, ident: str, steps: int) -> dict[str, Any] | None:
    """Load an interrupted fit from ``path`` into ``fqe``; None (start over, saying why) when
    the file is unreadable or of another fit."""
    try:
        saved = load_checkpoint(path)
    except CheckpointError as e:
        why = str(e)  # ours: one line, naming the file
    else:
        at = int(saved.get("fqe", {}).get("steps", -1))
        if saved.get("fqe_fit") != ident:
            why = f"{path}: a fit of other policies, data or settings"
        elif not 0 <= at <= steps:
            why = f"{path}: a fit at step {at}, past --fqe_steps {steps}"
        else:
            fqe.load_state_dict(saved["fqe"])
            print(f"FQE: going on from {path} at step {at:,} of {steps:,}", file=sys.stderr)
            return saved
    print(f"FQE: starting over ({why})", file=sys.stderr)
    return None


def interval(per_head: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over the heads and the normal interval from their spread (NaN for one head)."""
    est = per_head.mean(1)
    if per_head.shape[1] > 1:
        half = 1.96 * per_head.std(1, ddof=1)
    else:
        half = np.full(len(est), np.nan)
    return est, est - half, est + half


@torch.no_grad()
def _start_values(critic, rules, dataset, samples, h, device) -> np.ndarray:
    """Mean over the episode starts of Q_i(s0, a0), a0 drawn ``samples`` times: ``[p, h]``."""
    s0 = torch.as_tensor(dataset.observations[dataset.episode_starts], device=device)
    p = len(rules)
    total = torch.zeros(p * h, dtype=torch.float64, device=device)
    for _ in range(samples):
        a0 = torch.stack([rule(s0) for rule in rules]).repeat_interleave(h, dim=0)
        q = critic(torch.cat([s0.expand(p * h, -1, -1), a0], -1))
        total += q.double().mean(1)
    return (total / samples).reshape(p, h).cpu().numpy()


def _episode_of_rows(dataset: Dataset) -> np.ndarray:
    """The episode index of every transition."""
    marks = np.zeros(len(dataset), dtype=np.int64)
    marks[dataset.episode_starts[1:]] = 1
    return np.cumsum(marks)


def _bootstrap_weights(episodes: int, heads: int, gen: torch.Generator) -> torch.Tensor:
    """Poisson(1) weight of every episode for each head (head 0 of one head: all ones)."""
    if heads == 1:
        return torch.ones(1, episodes)
    rate = torch.ones(heads, episodes)
    return torch.poisson(rate, generator=gen)


def value_range(data: Dataset, gamma: float) -> tuple[float, float]:
    """The discounted returns any policy can have with the data's rewards (an episode may end
    early: 0 is inside): ``[min(0, r_min), max(0, r_max)] / (1 - gamma)``."""
    r = np.asarray(data.rewards, dtype=np.float64)
    return min(0.0, float(r.min())) / (1 - gamma), max(0.0, float(r.max())) / (1 - gamma)


def discounted_reference(score: float, gamma: float, horizon: int = 1000) -> float:
    """A return per episode of ``horizon`` steps as the discounted return of the same reward
    spread evenly over the steps: ``score / horizon * (1 - gamma^horizon) / (1 - gamma)``."""
    return score / horizon * (1.0 - gamma**horizon) / (1.0 - gamma)


def normalized_value(value: float, ref_min: float, ref_max: float, gamma: float) -> float:
    """A discounted value on the dataset's normalized-score scale, with the references turned
    into discounted returns by :func:`discounted_reference` (an approximation: it assumes
    episodes of the full horizon with an even reward)."""
    lo, hi = discounted_reference(ref_min, gamma), discounted_reference(ref_max, gamma)
    return 100.0 * (value - lo) / (hi - lo) if math.isfinite(value) else math.nan


class FQETracker:
    """A learning curve without a simulator (``--fqe_every``): one FQE critic follows the
    training policy through the run, ``updates`` more gradient steps at each call, warm-started
    from where it was (the policy moves little between calls), and gives its value at the
    dataset's episode starts."""

    COLUMNS = ("FQEReturnStart", "FQEScore", "FQEDiverged")

    def __init__(
        self,
        dataset: Dataset,
        gamma: float,
        refs: tuple[float, float] | None,
        updates: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
        cfg: FQEConfig | None = None,
    ) -> None:
        cfg = FQEConfig(heads=1, seed=seed) if cfg is None else cfg
        self.fqe = FQE(1, dataset, cfg, gamma, device)
        self.gamma, self.refs, self.updates = gamma, refs, updates
        self.range = value_range(dataset, gamma)

    def __call__(self, rule: Rule) -> dict[str, float | None]:
        self.fqe.fit([rule], self.updates)
        value = float(self.fqe.values([rule])[0, 0])
        score = normalized_value(value, *self.refs, self.gamma) if self.refs else None
        lo, hi = self.range  # outside: the fit diverged (the policy acts where the data has not)
        diverged = int(not (math.isfinite(value) and lo <= value <= hi))
        return {"FQEReturnStart": value, "FQEScore": score, "FQEDiverged": diverged}

    def empty(self) -> dict[str, None]:
        return dict.fromkeys(self.COLUMNS)
