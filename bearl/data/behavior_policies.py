"""Behaviour policies: train SAC (or TQC) online with Stable-Baselines3 and keep scored snapshots.

This is how D4RL and Minari made their MuJoCo datasets: train an agent online, keep policy
snapshots with their measured returns, keep the replay buffer, then roll snapshots out.

A run folder (``--out``) holds:

- ``snapshots/step_XXXXXXX.pt``  actor weights at every evaluation (bearl policy files);
- ``evaluations.csv``            step, wall time, stochastic and deterministic returns;
- ``checkpoint/``                SB3 model + the replay buffer's filled rows + state, every
                                 ``checkpoint_every`` steps, written to a temporary folder and
                                 renamed (atomic);
- ``run.json``                   settings and versions.

SB3 checkpoints are pickles written by this run; resuming reads them (trusted local files).
The shipped policy files are weights only and are loaded without executing code.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bearl.data.policy_io import save_policy
from bearl.envs import make_env, normalized_score, reference_scores, resolve_env_id
from bearl.errors import BearlError
from bearl.nets import TanhGaussianActor
from bearl.rollouts import run_episodes

SB3_LOG_STD_BOUNDS = (-20.0, 2.0)  # SB3's SAC clamps the actor's log-std to this range


ALGOS = ("SAC", "TQC")
LEVELS = ("medium", "expert", "medium-replay")  # what export_policies writes


@dataclass
class BehaviorConfig:
    """Settings of a behaviour-policy training run (SB3 SAC, or sb3-contrib's TQC)."""

    algo: str = "SAC"
    """SAC (Stable-Baselines3), or TQC (sb3-contrib): SAC with distributional critics that drop
    their top quantiles, which Minari used for HalfCheetah's expert data. Both actors are the
    same tanh-Gaussian, so their snapshots are the same kind of policy file."""
    env: str = "Hopper-v5"
    """Gymnasium env id (or any accepted name, e.g. ``hopper``)."""
    steps: int = 1_000_000
    """Total environment steps."""
    out: str = "behavior/hopper"
    """Run folder."""
    seed: int = 0
    """Seed of SB3, the env and the evaluation episodes."""
    eval_every: int = 10_000
    """Evaluate and keep a snapshot every this many env steps."""
    eval_episodes: int = 10
    """Episodes per evaluation (stochastic actions, as datasets are rolled out)."""
    checkpoint_every: int = 50_000
    """Write a resumable checkpoint (model + replay buffer) every this many env steps."""
    learning_starts: int = 10_000
    """Uniform-random steps before the first update."""
    train_freq: int = 2
    """One gradient step every this many env steps (2 halves the cost, same learning per step)."""
    batch_size: int = 256
    hidden: tuple[int, int] = (256, 256)
    threads: int = 1
    """Torch threads (one run per core is the best use of a 2-core machine)."""


def sb3_actor_to_bearl(model) -> TanhGaussianActor:
    """Copy an SB3 SAC or TQC actor (latent_pi, mu, log_std) into a bearl TanhGaussianActor."""
    sb3 = model.policy.actor
    linears = [m for m in sb3.latent_pi if isinstance(m, torch.nn.Linear)]
    hidden = [m.out_features for m in linears]
    actor = TanhGaussianActor(
        linears[0].in_features, sb3.mu.out_features, hidden, log_std_bounds=SB3_LOG_STD_BOUNDS
    )
    ours = [m for m in actor.trunk if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for dst, src in zip(ours, linears):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
        actor.mean.load_state_dict(sb3.mu.state_dict())
        actor.log_std.load_state_dict(sb3.log_std.state_dict())
    return actor.eval()


def policy_act(actor: TanhGaussianActor, deterministic: bool, seed: int = 0):
    """A batched numpy act function for ``run_episodes`` (stochastic draws are seeded)."""
    gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def act(obs: np.ndarray) -> np.ndarray:
        o = torch.as_tensor(obs, dtype=torch.float32)
        mean, log_std = actor.dist_params(o)
        if deterministic:
            return torch.tanh(mean).numpy()
        eps = torch.randn(mean.shape, generator=gen)
        return torch.tanh(mean + log_std.exp() * eps).numpy()

    return act


def train_behavior(cfg: BehaviorConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train (or resume) a behaviour policy; returns the run folder."""
    if cfg.algo not in ALGOS:
        raise BearlError(
            f"--algo {cfg.algo}: behaviour policies are trained with {' or '.join(ALGOS)}"
        )
    try:
        from stable_baselines3.common.callbacks import BaseCallback

        if cfg.algo == "TQC":
            from sb3_contrib import TQC as Agent
        else:
            from stable_baselines3 import SAC as Agent
    except ImportError as e:
        raise BearlError(
            f"training behaviour policies with {cfg.algo} needs {e.name.split('.')[0]}: "
            "pip install 'bearl[datagen]' (from a clone: pip install -e '.[datagen]')"
        ) from None
    from bearl.progress import progress_bar

    torch.set_num_threads(cfg.threads)
    env_id = resolve_env_id(cfg.env)
    out = Path(cfg.out)
    ckpt = out / "checkpoint"
    state_file = ckpt / "state.json"
    if resume:
        if not state_file.exists():
            raise BearlError(f"{out}: nothing to resume (no checkpoint/state.json)")
        saved = json.loads((out / "run.json").read_text())
        if saved["env_id"] != env_id:
            raise BearlError(f"{out}: the run trains {saved['env_id']}, not {env_id}")
        saved_algo = saved["config"].get("algo", "SAC")  # runs from before --algo are SAC
        if saved_algo != cfg.algo:
            raise BearlError(f"{out}: the run trains {saved_algo}, not {cfg.algo} (--algo)")
    elif (out / "evaluations.csv").exists():
        raise BearlError(f"{out}: a run already exists here; use --resume or another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    refs = reference_scores(env_id)
    env = make_env(env_id)
    wall0 = time.time()

    if resume:
        state = json.loads(state_file.read_text())
        model = Agent.load(ckpt / "model.zip", env=env, device="cpu")
        if (ckpt / REPLAY_FILE).exists():
            load_replay(model.replay_buffer, ckpt / REPLAY_FILE)
        else:  # a checkpoint written before the compact format: SB3's pickle
            model.load_replay_buffer(ckpt / "replay_buffer.pkl")
        wall0 -= state["wall_time"]
        _truncate_evaluations(out / "evaluations.csv", state["step"])
    else:
        (out / "run.json").write_text(
            json.dumps({"config": asdict(cfg), "env_id": env_id, **_versions()}, indent=2)
        )
        with open(out / "evaluations.csv", "w", newline="") as f:
            csv.writer(f).writerow(
                ["step", "wall_time", "stoch_mean", "stoch_std", "det_mean", "normalized_stoch"]
            )
        model = Agent(
            "MlpPolicy",
            env,
            learning_starts=cfg.learning_starts,
            train_freq=cfg.train_freq,
            gradient_steps=1,
            batch_size=cfg.batch_size,
            buffer_size=max(cfg.steps, 1_000_000),  # never overwritten: medium-replay slices it
            policy_kwargs={"net_arch": list(cfg.hidden)},
            seed=cfg.seed,
            device="cpu",
            verbose=0,
        )

    start = model.num_timesteps
    bar = progress_bar(cfg.steps, disable=not progress, initial=start, unit="step", smoothing=0.05)

    def evaluate(step: int) -> None:
        actor = sb3_actor_to_bearl(model)
        stoch = run_episodes(
            policy_act(actor, False, cfg.seed + step),
            env_id,
            cfg.eval_episodes,
            seed=10_000 + cfg.seed,
        )
        det = run_episodes(
            policy_act(actor, True), env_id, cfg.eval_episodes, seed=10_000 + cfg.seed
        )
        s_mean = float(stoch.returns.mean())
        norm = float(normalized_score(s_mean, *refs)) if refs else float("nan")
        save_policy(
            actor,
            out / "snapshots" / f"step_{step:07d}.pt",
            env_id=env_id,
            step=step,
            stoch_return_mean=s_mean,
            stoch_return_std=float(stoch.returns.std()),
            det_return_mean=float(det.returns.mean()),
            normalized_stoch=norm,
        )
        with open(out / "evaluations.csv", "a", newline="") as f:
            csv.writer(f).writerow(
                [
                    step,
                    round(time.time() - wall0, 1),
                    round(s_mean, 2),
                    round(float(stoch.returns.std()), 2),
                    round(float(det.returns.mean()), 2),
                    round(norm, 2),
                ]
            )
        bar.set_postfix(stoch=f"{s_mean:.0f}", det=f"{det.returns.mean():.0f}")
        bar.write(
            f"step {step}: stochastic return {s_mean:.1f} (norm {norm:.1f}), "
            f"deterministic {det.returns.mean():.1f}"
        )

    def checkpoint(step: int) -> None:
        tmp = out / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save(tmp / "model.zip")
        save_replay(model.replay_buffer, tmp / REPLAY_FILE)
        (tmp / "state.json").write_text(
            json.dumps({"step": step, "wall_time": time.time() - wall0})
        )
        old = out / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if ckpt.exists():
            ckpt.rename(old)
        tmp.rename(ckpt)
        shutil.rmtree(old, ignore_errors=True)

    class Hook(BaseCallback):
        def _on_step(self) -> bool:
            step = self.num_timesteps
            if step % 100 == 0:
                bar.update(step - bar.n)
            if step % cfg.eval_every == 0:
                evaluate(step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoint(step)
            return True

    if start < cfg.steps:
        model.learn(cfg.steps - start, callback=Hook(), reset_num_timesteps=False)
    bar.close()
    return out


# SB3's replay buffer preallocates every row (1M x 17 float64 observations, twice, for HalfCheetah:
# 294 MB) and its pickle writes them all, filled or not. A checkpoint keeps only the rows filled
# so far, in their own dtypes (resuming is exact), as one uncompressed .npz.
REPLAY_FILE = "replay_buffer.npz"
_REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def save_replay(buffer, path: Path) -> None:
    """Write the filled rows of an SB3 ``ReplayBuffer`` and its position to ``path``."""
    n = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {k: getattr(buffer, k)[:n] for k in _REPLAY_ARRAYS if hasattr(buffer, k)}
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to a str path
        np.savez(f, pos=buffer.pos, full=buffer.full, **arrays)


def load_replay(buffer, path: Path) -> None:
    """Fill a fresh SB3 ``ReplayBuffer`` (of the run's size) from :func:`save_replay`'s file."""
    with np.load(path) as z:
        for k in _REPLAY_ARRAYS:
            if k in z.files:
                rows = z[k]
                getattr(buffer, k)[: len(rows)] = rows
        buffer.pos, buffer.full = int(z["pos"]), bool(z["full"])


def _truncate_evaluations(path: Path, last_step: int) -> None:
    """Drop evaluation rows written after the checkpoint a run resumes from (they are redone)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    keep = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= last_step]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(keep)


def _versions() -> dict[str, str]:
    import gymnasium
    import mujoco

    return {
        "mujoco": mujoco.__version__,
        "gymnasium": gymnasium.__version__,
        "torch": torch.__version__,
    }


# -- choosing and shipping policies ---------------------------------------------------------
def read_evaluations(run_dir: Path) -> list[dict[str, float]]:
    """Rows of a behaviour run's evaluations.csv as dicts of floats."""
    path = Path(run_dir) / "evaluations.csv"
    if not path.exists():
        raise BearlError(f"{run_dir}: no evaluations.csv (not a behaviour run folder?)")
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def choose_snapshots(
    rows: list[dict[str, float]], medium_step: int | None = None, expert_step: int | None = None
) -> tuple[int, int]:
    """(medium step, expert step) of a behaviour run.

    expert: the snapshot with the highest stochastic return. medium: the first snapshot whose
    stochastic return is within [0.9, 1.2] x one third of the expert's (D4RL's "about a third of
    the expert"), else the one closest to a third.
    """
    by_step = {int(r["step"]): r["stoch_mean"] for r in rows}
    if expert_step is None:
        expert_step = max(by_step, key=lambda s: by_step[s])
    target = by_step[expert_step] / 3.0
    if medium_step is None:
        inside = [s for s in sorted(by_step) if 0.9 * target <= by_step[s] <= 1.2 * target]
        medium_step = inside[0] if inside else min(by_step, key=lambda s: abs(by_step[s] - target))
    for s in (medium_step, expert_step):
        if s not in by_step:
            raise BearlError(f"no snapshot at step {s}")
    return medium_step, expert_step


def export_policies(
    run_dir: str | Path,
    out_dir: str | Path,
    medium_step: int | None = None,
    expert_step: int | None = None,
    episodes: int = 50,
    seed: int = 0,
    max_chain: int = 24,
    levels: Sequence[str] = LEVELS,
    candidates: int = 1,
) -> dict[str, dict]:
    """Write ``<env>-medium.pt``, ``<env>-expert.pt`` and ``<env>-replay.pt`` into ``out_dir``.

    ``levels`` writes only some of them (e.g. ``["expert"]``: a stronger expert from another
    run, the medium and replay policies kept); ``policies.json`` keeps the other levels' entries.

    The replay file is the chain of snapshots that collected the run's data up to the medium
    snapshot (None for the uniform-random warm-up), stored in float16, which
    ``bearl.data.suite`` rolls out to rebuild medium-replay. The chosen snapshots are measured
    again over ``episodes`` stochastic episodes; the numbers go into ``policies.json``. The chain
    keeps every k-th snapshot, k the smallest that leaves at most ``max_chain`` of them (each
    ~140 KB), and each one then stands for the k x ``eval_every`` env steps that follow it.

    ``candidates`` > 1 (without ``expert_step``): the expert is the best of the ``candidates``
    snapshots with the highest 10-episode returns, each measured over the same ``episodes``
    stochastic episodes (:func:`screen_experts`). A 10-episode evaluation cannot see a policy
    that falls in one episode of fifty, and a dataset of 1,000 episodes does.
    """
    from bearl.envs import env_family

    unknown = sorted(set(levels) - set(LEVELS))
    if unknown or not levels:
        raise BearlError(f"--levels {','.join(levels)}: choose from {', '.join(LEVELS)}")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = json.loads((run_dir / "run.json").read_text())
    env_id = run["env_id"]
    family = env_family(env_id)
    rows = read_evaluations(run_dir)
    screened: list[dict] = []
    if expert_step is None and candidates > 1:
        screened = screen_experts(run_dir, rows, candidates, episodes, seed)
        expert_step = max(screened, key=lambda r: r["return_mean"])["train_step"]
    m_step, e_step = choose_snapshots(rows, medium_step, expert_step)
    index_path = out_dir / "policies.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    entry: dict[str, dict] = {}
    for level, step in (("medium", m_step), ("expert", e_step)):
        if level not in levels:
            continue
        actor, stats = measure_snapshot(run_dir, step, episodes, seed)
        if level == "expert" and screened:
            stats["screened"] = screened
        save_policy(actor, out_dir / f"{family}-{level}.pt", **stats)
        entry[level] = stats
    if "medium-replay" in levels:
        entry["medium-replay"] = _export_replay_chain(
            run_dir, run, m_step, max_chain, out_dir / f"{family}-replay.pt"
        )
    index[family] = {**index.get(family, {}), **entry}
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True))
    return entry


def measure_snapshot(
    run_dir: Path, step: int, episodes: int, seed: int = 0
) -> tuple[TanhGaussianActor, dict]:
    """A behaviour run's snapshot at ``step`` and its returns over ``episodes`` stochastic
    episodes (reset seeds 20,000 + seed onwards: every snapshot meets the same starts)."""
    from bearl.data.policy_io import load_policy_file

    run = json.loads((Path(run_dir) / "run.json").read_text())
    env_id = run["env_id"]
    refs = reference_scores(env_id)
    actor, _ = load_policy_file(Path(run_dir) / "snapshots" / f"step_{step:07d}.pt")
    returns = run_episodes(
        policy_act(actor, False, seed), env_id, episodes, seed=20_000 + seed
    ).returns
    stats = {
        "env_id": env_id,
        "train_step": step,
        "episodes": episodes,
        "return_mean": round(float(returns.mean()), 1),
        "return_std": round(float(returns.std()), 1),
        "return_min": round(float(returns.min()), 1),
        "normalized": round(float(normalized_score(returns.mean(), *refs)), 1) if refs else None,
        "mujoco": run.get("mujoco"),
        "gymnasium": run.get("gymnasium"),
        "algo": run["config"].get("algo", "SAC"),  # runs from before --algo are SAC
    }
    return actor, stats


def screen_experts(
    run_dir: Path, rows: list[dict[str, float]], candidates: int, episodes: int, seed: int = 0
) -> list[dict]:
    """Measure the ``candidates`` snapshots with the highest 10-episode stochastic returns over
    ``episodes`` episodes each; one row per snapshot (step, mean, std, min, normalized), printed
    as it is measured. The best mean of several is biased upwards (by about its standard error
    for a handful of candidates): the dataset made from it is the independent check."""
    best = sorted(rows, key=lambda r: r["stoch_mean"], reverse=True)[:candidates]
    out = []
    for r in best:
        _, stats = measure_snapshot(run_dir, int(r["step"]), episodes, seed)
        keep = ("train_step", "return_mean", "return_std", "return_min", "normalized")
        out.append({k: stats[k] for k in keep})
        print(
            f"step {stats['train_step']:>8}: 10 episodes {r['stoch_mean']:9.1f}, "
            f"{episodes} episodes {stats['return_mean']:9.1f} ± {stats['return_std']:.1f} "
            f"(min {stats['return_min']:.1f}), normalized {stats['normalized']}",
            flush=True,
        )
    return out


def _export_replay_chain(run_dir: Path, run: dict, m_step: int, max_chain: int, path: Path) -> dict:
    """Write the chain of snapshots that collected the run's data up to ``m_step`` to ``path``."""
    from bearl.data.policy_io import load_policy_file

    learning_starts = int(run["config"]["learning_starts"])
    every = int(run["config"]["eval_every"])
    every *= max(1, math.ceil(m_step / every / max_chain))  # keep the package small
    chain: list = []
    steps: list[int] = []
    for start in range(0, m_step, every):
        if start < learning_starts or start == 0:
            chain.append(None)  # uniform random actions (SB3's warm-up)
        else:
            actor, _ = load_policy_file(run_dir / "snapshots" / f"step_{start:07d}.pt")
            chain.append({k: v.half() for k, v in actor.state_dict().items()})
        steps.append(start)
    medium, _ = load_policy_file(run_dir / "snapshots" / f"step_{m_step:07d}.pt")
    torch.save(
        {
            "obs_dim": medium.trunk[0].in_features,
            "act_dim": medium.mean.out_features,
            "hidden": [m.out_features for m in medium.trunk if isinstance(m, torch.nn.Linear)],
            "log_std_bounds": list(SB3_LOG_STD_BOUNDS),
            "snapshots": chain,
            "steps": steps,
            "transitions_per_snapshot": every,
            "env_steps": m_step,
            "env_id": run["env_id"],
        },
        path,
    )
    return {"snapshots": len(chain), "env_steps": m_step}
