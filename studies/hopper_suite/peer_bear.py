"""d3rlpy's BEAR on the hopper suite with the budget of studies/hopper_suite/hopper_suite.yaml.

Run with bearl's Python (``python studies/hopper_suite/peer_bear.py``)
after ``bench/setup_peer.sh``:
it writes each dataset once as a D4RL-layout file (``bearl data convert``) and runs
``peer_d3rlpy_train.py`` (beside it) in the peer venv, one run folder per dataset and seed under
the sweep's ``log_dir``, named ``BEAR-d3rlpy_<dataset>_seed<N>``. Finished runs are skipped;
an interrupted run starts again (d3rlpy runs keep no checkpoint).

``--repaired`` runs d3rlpy's BEAR with the repairs of its two defects (``--fix-alpha-grad
--fix-alpha-lr`` of peer_d3rlpy_train.py; docs/results.md, "d3rlpy's BEAR, examined") as
``BEAR-d3rlpy-repaired_<dataset>_seed<N>``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from bearl.algos.bear import WARM_START_MAX_FRACTION, BEARConfig
from bearl.data import load_dataset
from bearl.data.d4rl import write_d4rl
from bearl.envs import reference_scores

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spec", default=str(HERE / "hopper_suite.yaml"))
    p.add_argument("--peer-python", default=str(ROOT / ".venv-d3rlpy" / "bin" / "python"))
    p.add_argument("--data-dir", default="runs/peer_data", help="where the HDF5 copies go")
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument(
        "--repaired", action="store_true", help="with the repairs of d3rlpy's two BEAR defects"
    )
    a = p.parse_args()
    spec = yaml.safe_load(Path(a.spec).read_text())
    base = spec["base"]
    seeds = a.seeds if a.seeds is not None else list(range(spec.get("num_seeds", 1)))
    steps = int(base["steps"])
    # the warm start bearl's paper preset gives this budget: 40k steps, capped at a fifth
    warmup = min(BEARConfig.warm_start_steps, steps // WARM_START_MAX_FRACTION)
    data_dir = Path(a.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    prepared: dict[str, tuple[Path, str, float, float]] = {}
    label = "BEAR-d3rlpy-repaired" if a.repaired else "BEAR-d3rlpy"
    repairs = ["--fix-alpha-grad", "--fix-alpha-lr"] if a.repaired else []
    for seed in seeds:
        for name in spec["datasets"]:
            out = Path(spec["log_dir"]) / f"{label}_{name}_seed{seed}"
            if (out / "result.json").exists():
                continue
            if name not in prepared:
                ds = load_dataset(name)  # made on first use, as bearl train does
                # the copy is named by the policy files the dataset was made from, so a
                # dataset remade from other shipped policies is never read from an old copy
                path = data_dir / f"{name}-{ds.info.metadata.get('policy_digest', 'none')}.hdf5"
                if not path.exists():
                    write_d4rl(ds, path)
                env = ds.info.env_name
                ref_min, ref_max = reference_scores(env)
                prepared[name] = (path, env, ref_min, ref_max)
            path, env, ref_min, ref_max = prepared[name]
            cmd = [a.peer_python, str(HERE / "peer_d3rlpy_train.py")]
            cmd += ["--dataset", str(path), "--name", name, "--env", env]
            cmd += ["--ref-min", str(ref_min), "--ref-max", str(ref_max)]
            cmd += ["--steps", str(steps), "--eval-every", str(base["eval_every"])]
            cmd += ["--eval-episodes", str(base.get("eval_episodes", 10))]
            cmd += ["--warmup-steps", str(warmup), "--seed", str(seed), "--out", str(out)]
            cmd += ["--label", label, *repairs]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    return None


if __name__ == "__main__":
    sys.exit(main())
