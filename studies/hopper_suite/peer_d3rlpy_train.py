"""Train d3rlpy's BEAR on a bearl dataset and log it the way bearl logs a run.

Runs in the peer virtualenv (``bench/setup_peer.sh``: d3rlpy 2.8.1, which pins gymnasium 1.0,
with the same mujoco as bearl's venv). The dataset is a D4RL-layout HDF5 file, e.g. from
``bearl data convert hopper-medium --to d4rl hopper-medium.hdf5``. The run folder gets
``variant.json``, ``progress.csv`` (Step, AverageReturn, NormalizedScore, WallTime) and
``result.json`` in bearl's format, so ``bearl report`` and ``bearl plot`` put it beside
bearl's runs. A folder with ``result.json`` is skipped (finished).

Settings: d3rlpy's BEARConfig defaults, except ``warmup_steps``, which is given (d3rlpy's
default, 40k, would be a third of a short run; experiments pass bearl's own capped warm start),
and any field given with ``--set FIELD=VALUE`` (recorded in variant.json). ``--fix-alpha-grad``
repairs d3rlpy 2.8.1's Lagrange update, which cancels the support constraint in the actor's
gradient (``fix_alpha_update``), ``--fix-alpha-lr`` the learning rate of alpha (``fix_alpha_lr``);
both are recorded in variant.json.
Evaluation uses d3rlpy's ``predict`` (its greedy rule: 100 policy samples, the one the first
critic values most), on ``--eval-episodes`` episodes seeded like bearl's evaluation;
``--also-mean`` also logs the score of the policy's mean action (``NormalizedScoreMean``).
progress.csv also has d3rlpy's alpha, MMD loss and SAC temperature (means since the previous
evaluation).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def load_d4rl(path: Path):
    import d3rlpy
    import h5py

    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in ("observations", "actions", "rewards", "terminals")}
        timeouts = f["timeouts"][()] if "timeouts" in f else np.zeros(len(data["rewards"]), bool)
    timeouts = timeouts.astype(bool)
    terminals = data["terminals"].astype(bool)
    if not (terminals[-1] or timeouts[-1]):
        timeouts[-1] = True  # d3rlpy needs the last episode closed
    return d3rlpy.dataset.MDPDataset(
        data["observations"].astype(np.float32),
        data["actions"].astype(np.float32),
        data["rewards"].astype(np.float32),
        terminals,
        timeouts,
    )


# d3rlpy's update metrics logged as their mean since the last evaluation (blank during the
# warm start, when the actor step does not report them)
LOGGED = ("alpha", "mmd_loss", "temp")


def fix_alpha_update(algo) -> None:
    """Make d3rlpy's BEAR update log_alpha without touching the actor's gradient.

    d3rlpy 2.8.1 (``BEARImpl.update_alpha``) back-propagates ``-mmd_loss`` with
    ``retain_graph=True`` after the actor's gradients were zeroed and before the actor loss
    (which contains ``+mmd_loss``) is back-propagated into the same gradients: the two MMD terms
    cancel, and after the warm-up the actor follows the SAC loss alone, with no support
    constraint (``d3rlpy_bear_grad.py`` measures it). Here the alpha loss's gradient is
    taken for log_alpha only; everything else is d3rlpy's.
    """
    import torch
    from d3rlpy.models.torch import get_parameter

    impl = algo.impl

    def update_alpha(mmd_loss: torch.Tensor) -> None:
        log_alpha = get_parameter(impl.modules.log_alpha)
        impl.modules.alpha_optim.zero_grad()
        (log_alpha.grad,) = torch.autograd.grad(-mmd_loss, [log_alpha], retain_graph=True)
        impl.modules.alpha_optim.step()
        log_alpha.data.clamp_(-5.0, 10.0)  # d3rlpy's clamp

    impl.update_alpha = update_alpha


def fix_alpha_lr(algo, lr: float) -> None:
    """Give d3rlpy's alpha optimizer ``lr`` (its ``alpha_learning_rate``): d3rlpy 2.8.1 builds
    it with ``actor_learning_rate`` (``BEAR.inner_create_impl``)."""
    for group in algo.impl.modules.alpha_optim.optim.param_groups:
        group["lr"] = lr


def evaluate(algo, env_id: str, episodes: int, seed: int, rule: str = "greedy") -> np.ndarray:
    """Returns of ``episodes`` episodes. ``rule``: ``greedy`` is d3rlpy's ``predict`` (the best
    of 100 policy samples by the first critic), ``mean`` the policy's mean action tanh(mu)."""
    import gymnasium as gym
    import torch

    def act(obs: np.ndarray) -> np.ndarray:
        x = obs[None].astype(np.float32)
        if rule == "greedy":
            return algo.predict(x)[0]
        with torch.no_grad():
            return algo.impl.modules.policy(torch.from_numpy(x)).squashed_mu[0].numpy()

    env = gym.make(env_id)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, total = False, 0.0
        while not done:
            action = act(obs)
            obs, reward, term, trunc, _ = env.step(action)
            total += float(reward)
            done = term or trunc
        returns.append(total)
    return np.asarray(returns)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="D4RL-layout HDF5 file")
    p.add_argument("--name", required=True, help="dataset label in the logs (hopper-medium)")
    p.add_argument("--env", required=True)
    p.add_argument("--ref-min", type=float, required=True)
    p.add_argument("--ref-max", type=float, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--eval-every", type=int, required=True)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--warmup-steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a BEARConfig field, e.g. initial_temperature=0.001 (repeatable)",
    )
    p.add_argument(
        "--also-mean",
        action="store_true",
        help="also evaluate the policy's mean action at each evaluation (NormalizedScoreMean); "
        "the reported score stays d3rlpy's greedy rule",
    )
    p.add_argument(
        "--fix-alpha-grad",
        action="store_true",
        help="d3rlpy 2.8.1's alpha update cancels the MMD term of the actor's gradient; with "
        "this flag log_alpha is updated without touching the actor's gradient "
        "(fix_alpha_update)",
    )
    p.add_argument(
        "--fix-alpha-lr",
        action="store_true",
        help="d3rlpy 2.8.1 updates alpha at the actor's learning rate; with this flag at its "
        "alpha_learning_rate (fix_alpha_lr)",
    )
    p.add_argument(
        "--label",
        default="BEAR-d3rlpy",
        help="the run's algorithm name in variant.json and result.json (how reports group it)",
    )
    p.add_argument("--out", required=True, help="run folder")
    a = p.parse_args()
    out = Path(a.out)
    if (out / "result.json").exists():
        print(f"{out}: finished, skipped")
        return

    import d3rlpy
    import torch

    torch.set_num_threads(a.threads)
    d3rlpy.seed(a.seed)
    overrides = {}
    for item in a.set:
        field, sep, value = item.partition("=")
        if not sep:
            p.error(f"--set {item!r}: expected FIELD=VALUE")
        try:
            overrides[field] = json.loads(value)  # numbers, true/false, null
        except ValueError:
            overrides[field] = value  # e.g. mmd_kernel=gaussian
    try:
        cfg = d3rlpy.algos.BEARConfig(warmup_steps=a.warmup_steps, **overrides)
    except TypeError as e:
        p.error(f"--set: {e}")
    dataset = load_d4rl(Path(a.dataset))
    algo = cfg.create(device="cpu:0")
    algo.build_with_dataset(dataset)
    if a.fix_alpha_grad:
        fix_alpha_update(algo)
    if a.fix_alpha_lr:
        fix_alpha_lr(algo, cfg.alpha_learning_rate)

    out.mkdir(parents=True, exist_ok=True)
    train = {"algo": a.label, "dataset": a.name, "env": a.env, "seed": a.seed}
    train |= {"steps": a.steps, "eval_every": a.eval_every, "eval_episodes": a.eval_episodes}
    variant = {
        "algorithm": a.label,
        "train": train,
        "algo": {
            "d3rlpy": d3rlpy.__version__,
            "warmup_steps": a.warmup_steps,
            **overrides,
            **({"fix_alpha_grad": True} if a.fix_alpha_grad else {}),
            **({"fix_alpha_lr": True} if a.fix_alpha_lr else {}),
        },
        "seed": a.seed,
    }
    for name in ("variant.json", "params.json"):
        (out / name).write_text(json.dumps(variant, indent=2))

    def norm(r: float) -> float:
        return 100 * (r - a.ref_min) / (a.ref_max - a.ref_min)

    rows, wall = [], 0.0
    with open(out / "progress.csv", "w", newline="") as f:
        writer = csv.writer(f)
        head = ["Step", "AverageReturn", "NormalizedScore", "WallTime"]
        if a.also_mean:
            head += ["AverageReturnMean", "NormalizedScoreMean"]
        writer.writerow(head + list(LOGGED))
        sums: dict[str, list[float]] = {k: [] for k in LOGGED}
        for step in range(1, a.steps + 1):
            t0 = time.perf_counter()
            batch = dataset.sample_transition_batch(cfg.batch_size)
            metrics = algo.update(batch)
            wall += time.perf_counter() - t0
            for k in LOGGED:
                if k in metrics:
                    sums[k].append(float(metrics[k]))
            if step % a.eval_every == 0 or step == a.steps:
                # bearl's evaluation seeds: seed + 100_000 + episode (bearl.training.loop)
                returns = evaluate(algo, a.env, a.eval_episodes, a.seed + 100_000)
                row = [step, float(returns.mean()), norm(float(returns.mean())), wall]
                extra = ""
                if a.also_mean:
                    eps, seed = a.eval_episodes, a.seed + 100_000
                    mean = float(evaluate(algo, a.env, eps, seed, "mean").mean())
                    row += [mean, norm(mean)]
                    extra = f"; mean action {norm(mean):.1f}"
                means = [float(np.mean(v)) if v else "" for v in sums.values()]
                sums = {k: [] for k in LOGGED}
                writer.writerow(row + means)
                f.flush()
                rows.append(row)
                text = f"step {step}: return {row[1]:.1f} (normalized {row[2]:.1f}){extra}"
                print(text, flush=True)
    best = max(rows, key=lambda r: r[2])
    result = {
        "algo": a.label,
        "dataset": a.name,
        "env": a.env,
        "seed": a.seed,
        "steps": a.steps,
        "wall_time": wall,
        "final_score": rows[-1][2],
        "final_return": rows[-1][1],
        "best_score": best[2],
        "best_step": best[0],
        "best_return": best[1],
        "run_dir": str(out),
    }
    (out / "result.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
