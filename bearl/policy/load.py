"""Using what was trained: a run folder's checkpoint as a policy that acts in its environment.

``load_policy(RUN_DIR)`` rebuilds the algorithm from the checkpoint's saved configs and weights
(read with ``weights_only=True``; no dataset needed) and wraps it in a :class:`Policy` whose
``act`` returns actions in the ENVIRONMENT's bounds, rescaled exactly as the training loop did
(``a * half_range + center`` when the run evaluated in an env whose bounds are not [-1, 1]).

The observation and action widths are read from the checkpoint (``spaces``); checkpoints
written before they recorded them get the widths for which the algorithm, built from its saved
config, has exactly the saved network shapes.

``evaluate(policy, ...)`` runs episodes and summarises raw and normalized returns with a
Student-t confidence interval of the mean (``bearl.policy.stats``); ``bearl eval`` prints it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bearl.errors import BearlError, CheckpointError, one_line
from bearl.training.checkpoint import SNAPSHOTS, load_checkpoint, snapshot_path, snapshot_steps

# ``bearl eval`` resets its episodes with seeds train_seed + FRESH_SEED_OFFSET + i by default:
# not the episodes the training loop evaluated on (train_seed + 100_000 + i), on which the best
# checkpoint was selected, so the numbers are not biased by that selection.
FRESH_SEED_OFFSET = 200_000

CHECKPOINT_FILES = {"best": "best.pt", "final": "checkpoint.pt"}


class Policy:
    """A trained algorithm ready to act. Build it with :func:`load_policy`.

    Attributes:
        algo: the Algorithm (its networks hold the checkpoint's weights).
        env_name: the environment the run evaluated in (None when the run names none).
        config: the checkpoint's saved configs, ``{"train": {...}, "algo": {...}}``.
        train_config / algo_config: the same as dataclasses.
        step: the gradient step of the checkpoint.
        obs_dim / act_dim: widths of observations and actions.
        action_low / action_high: the env's action bounds the outputs are rescaled to (None when
            the run had no env to evaluate in: then actions are returned as the algorithm gives
            them, as in training).
        ref_scores: (ref_min, ref_max) returns for normalized scores, or None.
        precision: ``fp32`` or ``bf16``, the hidden-layer matmuls it acts with (the run's
            ``--precision`` unless ``load_policy`` was given another).
        obs_shift / obs_scale: observation normalization ``(obs - shift) / scale`` applied
            before the networks, read from the checkpoint's optional ``obs_normalization``
            entry ``{"shift": [...], "scale": [...]}`` (None: none; bearl's training loop
            trains on raw observations today and writes no such entry).
    """

    def __init__(
        self,
        algo: Any,
        *,
        config: dict[str, Any],
        train_config: Any,
        algo_config: Any,
        step: int,
        env_name: str | None,
        action_low: np.ndarray | None,
        action_high: np.ndarray | None,
        ref_scores: tuple[float, float] | None,
        checkpoint_path: Path,
        run_dir: Path,
        best: dict[str, Any] | None = None,
        obs_shift: np.ndarray | None = None,
        obs_scale: np.ndarray | None = None,
    ) -> None:
        self.algo = algo
        self.precision = "fp32"  # (load_policy sets the run's)
        self.config = config
        self.train_config = train_config
        self.algo_config = algo_config
        self.step = step
        self.env_name = env_name
        self.obs_dim, self.act_dim = int(algo.obs_dim), int(algo.act_dim)
        self.action_low, self.action_high = action_low, action_high
        self.ref_scores = ref_scores
        self.checkpoint_path = checkpoint_path
        self.run_dir = run_dir
        self.best = best
        self.obs_shift, self.obs_scale = obs_shift, obs_scale
        self.device = algo.device
        self.rescale = action_low is not None and not (
            np.allclose(action_low, -1) and np.allclose(action_high, 1)
        )
        self._modules: dict[bool, nn.Module] = {}

    @property
    def name(self) -> str:
        return self.algo.name

    def __repr__(self) -> str:
        return (
            f"Policy({self.algo.name}, env={self.env_name}, step={self.step}, "
            f"checkpoint={self.checkpoint_path})"
        )

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for one observation ``[obs_dim]`` or a batch ``[B, obs_dim]``, in the env's
        action bounds. ``deterministic=False`` is the algorithm's own action selection (as in
        its evaluations during training; may be random); ``True`` its deterministic variant
        (e.g. BEAR's mean action tanh(mu(s)))."""
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        if single:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.obs_dim:
            raise BearlError(
                f"observation of shape {np.shape(obs)}: this {self.algo.name} policy takes "
                f"[{self.obs_dim}] or [batch, {self.obs_dim}]"
            )
        out = self.module(deterministic)(torch.as_tensor(x, device=self.device)).cpu().numpy()
        return out[0] if single else out

    __call__ = act

    def module(self, deterministic: bool = False) -> nn.Module:
        """What ``act`` runs, as one module over the live networks: the observation
        normalization hook, the algorithm's ``action_rule`` and the rescale to the env's
        bounds. ``bearl export`` traces a copy of it."""
        from bearl.policy.export import PolicyModule

        if deterministic not in self._modules:
            center = half = None
            if self.rescale:
                low = np.asarray(self.action_low, dtype=np.float64)
                high = np.asarray(self.action_high, dtype=np.float64)
                center, half = (high + low) / 2, (high - low) / 2
            rule = self.algo.action_rule(deterministic)
            m = PolicyModule(rule, self.obs_dim, center, half, self.obs_shift, self.obs_scale)
            self._modules[deterministic] = m.to(self.device).eval()
        return self._modules[deterministic]

    def check_env(self, env: Any, env_name: str) -> None:
        """Raise BearlError unless ``env``'s spaces fit this policy (widths, and the action
        bounds the outputs are rescaled to)."""
        problems = []
        obs_shape = getattr(env.observation_space, "shape", None)
        act_shape = getattr(env.action_space, "shape", None)
        if obs_shape is None or int(np.prod(obs_shape)) != self.obs_dim:
            problems.append(f"it observes {obs_shape}, the policy takes {self.obs_dim} values")
        if act_shape is None or int(np.prod(act_shape)) != self.act_dim:
            problems.append(
                f"it takes actions of shape {act_shape}, the policy gives {self.act_dim}"
            )
        elif self.action_low is not None and hasattr(env.action_space, "low"):
            low = np.asarray(env.action_space.low, dtype=np.float64).reshape(-1)
            high = np.asarray(env.action_space.high, dtype=np.float64).reshape(-1)
            if not (np.allclose(low, self.action_low) and np.allclose(high, self.action_high)):
                problems.append(
                    f"its action bounds [{_fmt(low)}, {_fmt(high)}] differ from those the policy "
                    f"was trained with [{_fmt(self.action_low)}, {_fmt(self.action_high)}]"
                )
        if problems:
            trained = f" (trained on {self.env_name})" if self.env_name else ""
            raise BearlError(
                f"{env_name} does not fit this {self.algo.name} policy{trained}: "
                + "; ".join(problems)
            )


def _fmt(x: np.ndarray) -> str:
    return " ".join(f"{v:g}" for v in np.asarray(x).reshape(-1))


# -- loading ---------------------------------------------------------------------------------------
def resolve_checkpoint(run_dir: str | Path, checkpoint: str | Path = "best") -> tuple[Path, Path]:
    """``(run_dir, checkpoint file)`` for ``checkpoint`` = ``best`` (best.pt), ``final``
    (checkpoint.pt), ``step_N`` (the snapshot of step N, ``--snapshot_every``) or a path
    (absolute, relative to the working folder or to the run folder). ``run_dir`` may also be a
    checkpoint or snapshot file itself."""
    run = Path(run_dir)
    if run.is_file():
        folder = run.parent
        return (folder.parent if folder.name == SNAPSHOTS else folder), run
    if not run.is_dir():
        raise CheckpointError(f"{run}: no such run folder")
    key = str(checkpoint)
    if key.startswith("step_") and key.removeprefix("step_").isdigit():
        path = snapshot_path(run, int(key.removeprefix("step_")))
        if path.exists():
            return run, path
        steps = snapshot_steps(run)
        have = (
            f"its snapshots are at steps {_steps_text(steps)}"
            if steps
            else "it has no snapshots (runs keep them from --snapshot_every's first release on)"
        )
        raise CheckpointError(f"{run}: no snapshot of step {key.removeprefix('step_')}; {have}")
    if key in CHECKPOINT_FILES:
        path = run / CHECKPOINT_FILES[key]
        if path.exists():
            return run, path
        if key == "best" and (run / "checkpoint.pt").exists():
            raise CheckpointError(
                f"{run}: no best.pt (the run has not evaluated a policy yet, e.g. "
                "--eval_episodes 0); use the last checkpoint: checkpoint='final' / "
                "--checkpoint final"
            )
        raise CheckpointError(
            f"{run}: no {path.name} here; not a bearl run folder, or no checkpoint was written "
            "yet (the first one is written after --eval_every steps)"
        )
    path = Path(checkpoint)
    if not path.exists() and (run / path).exists():
        path = run / path
    if not path.exists():
        raise CheckpointError(
            f"{checkpoint}: checkpoint not found (choose best, final, step_N or a file)"
        )
    return run, path


def _steps_text(steps: list[int]) -> str:
    shown = [f"{s:,}" for s in steps]
    return ", ".join(shown if len(shown) <= 8 else [*shown[:3], "...", *shown[-3:]])


def load_policy(
    run_dir: str | Path,
    checkpoint: str | Path = "best",
    device: str | torch.device = "cpu",
    env: str | None = None,
    precision: str | None = None,
) -> Policy:
    """Load a trained policy from a run folder.

    Args:
        run_dir: the run folder (``runs/BEAR_hopper-medium_seed0_...``) or a checkpoint file.
        checkpoint: ``best`` (best.pt, the best evaluation score), ``final`` (checkpoint.pt,
            the last one), ``step_N`` (the snapshot of step N) or the path of a checkpoint or
            snapshot file.
        device: torch device of the networks.
        env: the environment the run evaluated in, used only when neither params.json nor
            the checkpoint's config names it (its action bounds are those of the outputs).
            To act in another environment, check it with ``Policy.check_env``.
        precision: ``fp32`` or ``bf16``, the hidden-layer matmuls of the networks when acting;
            None (default): the run's own ``--precision``, so that a bf16-trained run acts
            as it did in its training evaluations. (``bearl export`` writes float32 files
            whatever the precision.)
    """
    from bearl.algos import algorithm_class
    from bearl.config import TrainConfig, build

    run, path = resolve_checkpoint(run_dir, checkpoint)
    payload = load_checkpoint(path)
    saved = payload.get("config")
    state = payload.get("algo")
    if not isinstance(saved, dict) or "train" not in saved or "algo" not in saved:
        raise CheckpointError(f"{path}: the checkpoint has no saved config (config.train/algo)")
    if not isinstance(state, dict) or "nets" not in state:
        raise CheckpointError(f"{path}: the checkpoint has no algorithm state")
    params = _read_params(run)
    try:
        train_cfg = build(TrainConfig, saved["train"], strict=False)
        algo_cls = algorithm_class(str(state.get("algo") or train_cfg.algo))
        algo_cfg = build(algo_cls.config_cls, saved["algo"], strict=False)
    except BearlError as e:
        raise CheckpointError(f"{path}: its saved config does not load ({one_line(e)})") from None

    env_name = run_env_name(run) or train_cfg.env or env
    spaces = payload.get("spaces")
    if isinstance(spaces, dict) and {"obs_dim", "act_dim"} <= set(spaces):
        obs_dim, act_dim = int(spaces["obs_dim"]), int(spaces["act_dim"])
    else:  # a checkpoint of a bearl before 2026-12 records no widths
        obs_dim, act_dim = _infer_dims(algo_cls, algo_cfg, state["nets"], path)

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BearlError(f"device {device}: CUDA is not available on this machine")
    algo = algo_cls(copy.deepcopy(algo_cfg), obs_dim, act_dim, dev)
    try:
        algo.load_state_dict(_to_device(state, dev))
    except (KeyError, RuntimeError, ValueError) as e:
        from bearl import __version__

        made = (params.get("versions") or {}).get("bearl")
        by = f", trained by bearl {made} (this is {__version__})" if made else ""
        msg = (
            f"{path}: weights do not fit this bearl's {algo_cls.name} ({one_line(e, 160)}){by}: "
            "load it with the bearl that wrote it, or train the run again"
        )
        raise CheckpointError(msg) from None
    for net in algo.nets.values():
        net.eval()
    chosen = precision or getattr(train_cfg, "precision", "fp32") or "fp32"
    if chosen not in ("fp32", "bf16"):
        raise BearlError(f"precision must be fp32 or bf16, not {chosen!r}")
    algo.set_precision(chosen)

    # the training loop rescaled [-1, 1] to the env's bounds only when it evaluated in an env
    low = high = None
    evaluated = train_cfg.eval_episodes > 0
    if evaluated:
        if env_name is None:
            raise CheckpointError(
                f"{run}: the run evaluated in an environment but neither params.json nor the "
                "checkpoint names it; pass env=... (--env)"
            )
        from bearl.envs import make_env

        e = make_env(env_name)
        try:
            space = e.action_space
            obs_shape = getattr(e.observation_space, "shape", None)
            if obs_shape is not None and int(np.prod(obs_shape)) != obs_dim:
                raise CheckpointError(
                    f"{path}: the networks take {obs_dim} observation values but {env_name} "
                    f"observes {obs_shape}"
                )
            if hasattr(space, "low"):
                low = np.asarray(space.low, dtype=np.float64).reshape(-1)
                high = np.asarray(space.high, dtype=np.float64).reshape(-1)
                if low.size != act_dim:
                    raise CheckpointError(
                        f"{path}: the networks give {act_dim} action values but {env_name} "
                        f"acts with {space.shape}"
                    )
        finally:
            e.close()

    shift, scale = _obs_normalization(payload, obs_dim, path)
    policy = Policy(
        algo,
        config={"train": dict(saved["train"]), "algo": dict(saved["algo"])},
        train_config=train_cfg,
        algo_config=algo_cfg,
        step=int(payload.get("step", state.get("step", 0))),
        env_name=env_name,
        action_low=low,
        action_high=high,
        ref_scores=_dataset_refs(params, env_name),
        checkpoint_path=path,
        run_dir=run,
        best=payload.get("best"),
        obs_shift=shift,
        obs_scale=scale,
    )
    policy.precision = chosen
    return policy


def run_env_name(run_dir: str | Path) -> str | None:
    """The environment a run folder evaluated in (params.json), or None."""
    params = _read_params(Path(run_dir))
    train = params.get("train") or {}
    dataset = params.get("dataset") or {}
    return params.get("env_name") or train.get("env") or dataset.get("env_name")


def _obs_normalization(
    payload: dict[str, Any], obs_dim: int, path: Path
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(shift, scale) of the checkpoint's optional ``obs_normalization`` entry."""
    norm = payload.get("obs_normalization") or {}
    out = []
    for key in ("shift", "scale"):
        v = norm.get(key)
        if v is None:
            out.append(None)
            continue
        arr = np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
        if arr.shape not in ((), (obs_dim,)):
            raise CheckpointError(f"{path}: obs_normalization.{key} has shape {arr.shape}")
        out.append(np.broadcast_to(arr, (obs_dim,)).copy())
    return out[0], out[1]


def _read_params(run: Path) -> dict[str, Any]:
    for name in ("params.json", "variant.json"):
        p = run / name
        if p.exists():
            try:
                data = json.loads(p.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                return data
    return {}


def _dataset_refs(params: dict[str, Any], env_name: str | None) -> tuple[float, float] | None:
    from bearl.envs import references_or_d4rl

    ds = params.get("dataset") or {}
    return references_or_d4rl(ds.get("ref_min_score"), ds.get("ref_max_score"), env_name)


def _to_device(state: Any, device: torch.device) -> Any:
    if isinstance(state, torch.Tensor):
        return state.to(device)
    if isinstance(state, dict):
        return {k: _to_device(v, device) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_to_device(v, device) for v in state)
    return state


def _shapes(nets: dict[str, Any]) -> dict[str, dict[str, tuple[int, ...]]]:
    return {
        k: {n: tuple(t.shape) for n, t in sd.items() if isinstance(t, torch.Tensor)}
        for k, sd in nets.items()
    }


def _infer_dims(algo_cls: type, algo_cfg: Any, nets: dict[str, Any], path: Path) -> tuple[int, int]:
    """(obs_dim, act_dim) for which ``algo_cls`` has exactly the saved network shapes: for
    checkpoints written before they recorded the widths (``spaces``)."""
    ins: list[int] = []
    outs: list[int] = []
    for sd in nets.values():
        weights = [t for n, t in sd.items() if n.endswith("weight") and t.dim() >= 2]
        if not weights:
            continue
        first, last = weights[0], weights[-1]
        # nn.Linear weights are [out, in]; EnsembleLinear weights are [n, in, out]
        ins.append(int(first.shape[1]))
        outs.append(int(last.shape[2] if last.dim() == 3 else last.shape[0]))
    want = _shapes(nets)
    tried = set()
    for act in dict.fromkeys(outs):
        for width in dict.fromkeys(ins):
            for obs in (width, width - act):
                if obs < 1 or (obs, act) in tried:
                    continue
                tried.add((obs, act))
                try:
                    with torch.device("meta"):
                        probe = algo_cls(copy.deepcopy(algo_cfg), obs, act, "meta")
                except Exception:  # noqa: BLE001 - an impossible candidate
                    continue
                got = _shapes({k: m.state_dict() for k, m in probe.nets.items()})
                if got == want:
                    return obs, act
    raise CheckpointError(
        f"{path}: cannot tell the observation and action widths from the saved networks "
        f"(they do not fit {algo_cls.name} built from the saved config)"
    )


# -- evaluation ------------------------------------------------------------------------------------
def episode_settings(
    policy: Policy, env: str | None, episodes: int, seed: int | None
) -> tuple[str, int]:
    """The env and first episode seed of fresh episodes of ``policy`` (``bearl eval`` and
    ``bearl record``): its run's env unless ``env`` is given, and seeds train seed +
    FRESH_SEED_OFFSET unless ``seed`` is."""
    if episodes < 1:
        raise BearlError(f"--episodes must be >= 1, not {episodes}")
    env_name = env or policy.env_name
    if env_name is None:
        raise BearlError(f"{policy.run_dir}: the run names no environment; pass --env ENV")
    if seed is None:
        seed = int(policy.train_config.seed) + FRESH_SEED_OFFSET
    return env_name, seed


def evaluate(
    policy: Policy,
    episodes: int = 10,
    seed: int | None = None,
    env: str | None = None,
    deterministic: bool = False,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``policy`` and summarise raw and normalized returns.

    Episode i is reset with seed ``seed + i`` (default ``seed``: the run's seed +
    FRESH_SEED_OFFSET, episodes the best checkpoint was not selected on); torch's RNG (the
    algorithm's action sampling) is seeded with ``seed`` too, inside a forked RNG state.
    ``env`` evaluates in another environment (e.g. another version) after checking that its
    spaces fit. Each summary has mean, std (population, ddof=0, as progress.csv), median, min,
    max and the ``confidence`` Student-t interval of the mean (from the sample std, ddof=1);
    ``bearl eval`` prints the sample std, computed from ``returns`` / ``normalized_scores``.
    """
    from bearl.envs import env_family, make_env, reference_scores, resolve_env_id
    from bearl.policy.stats import describe
    from bearl.rollouts import run_episodes

    env_name, seed = episode_settings(policy, env, episodes, seed)
    envs = [make_env(env_name) for _ in range(episodes)]
    try:
        resolved = resolve_env_id(env_name)
        policy.check_env(envs[0], env_name if resolved == env_name else f"{env_name} ({resolved})")
        refs = policy.ref_scores
        if env is not None and env_family(env) != env_family(policy.env_name or ""):
            refs = reference_scores(env)  # another task: the run's dataset references do not apply
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            result = run_episodes(
                lambda o: policy.act(o, deterministic=deterministic),
                env_name,
                episodes,
                seed=seed,
                ref_scores=refs,
                envs=envs,
            )
    finally:
        for e in envs:
            e.close()
    norm = result.normalized
    return {
        "algo": policy.algo.name,
        "run_dir": str(policy.run_dir),
        "checkpoint": str(policy.checkpoint_path),
        "step": policy.step,
        "env": resolve_env_id(env_name),
        "episodes": episodes,
        "seed": seed,
        "deterministic": deterministic,
        "ci_method": "Student t interval of the mean (sample std, ddof=1)",
        "return": describe(result.returns, confidence),
        "normalized": describe(norm, confidence) if norm is not None else None,
        "ref_scores": list(refs) if refs else None,
        "returns": [float(r) for r in result.returns],
        "normalized_scores": [float(x) for x in norm] if norm is not None else None,
        "lengths": [int(n) for n in result.lengths],
    }
