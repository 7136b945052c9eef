"""Peak memory of loading a large dataset: does it hold the data once or twice?

    python studies/speed/memory.py [--rows 2000000] [--format d4rl|minari]

Writes a random Hopper-shaped dataset to a temporary folder, as a D4RL-layout file (with
next_observations) or as a Minari dataset (episodes of 1,000 steps), then loads it with
``bearl.load_dataset`` in a fresh process and reports the size of the dataset and how much the
process's peak resident memory grew while loading it (plus building the minibatch sampler,
which shares the dataset's memory on CPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = """
import json, sys
import bearl.data.d4rl, bearl.data.load, bearl.data.minari_io, minari  # before the baseline


def hwm_kib():  # peak resident set of THIS process (ru_maxrss survives exec on Linux)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])


before = hwm_kib()
ds = bearl.data.load.load_dataset(sys.argv[1])
sampler = ds.sampler(256)
peak = hwm_kib()
print(json.dumps({
    "dataset_mib": ds._packed.nbytes / 2**20,
    "peak_growth_mib": (peak - before) / 1024,
    "sampler_shares_memory": sampler.data.data_ptr() == ds._packed.ctypes.data,
}))
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--format", choices=["d4rl", "minari"], default="d4rl")
    args = p.parse_args()
    from bearl.data.d4rl import write_d4rl
    from bearl.data.dataset import Dataset
    from bearl.data.minari_io import write_minari

    rng = np.random.default_rng(0)
    n = args.rows
    timeouts = np.zeros(n, bool)
    timeouts[999::1000] = True
    obs = rng.normal(size=(n, 11)).astype(np.float32)
    ds = Dataset(
        obs,
        rng.uniform(-1, 1, (n, 3)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
        np.roll(obs, -1, axis=0),  # consistent episodes (Minari stores T+1 observations)
        np.zeros(n, bool),
        timeouts,
    )
    with tempfile.TemporaryDirectory() as tmp:
        if args.format == "d4rl":
            path = Path(tmp) / "big.hdf5"
            write_d4rl(ds, path)
        else:
            path = write_minari(ds, "bench/big-v0", root=tmp)
        del ds
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["rows"] = n
    result["format"] = args.format
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
