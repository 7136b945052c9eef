#!/usr/bin/env bash
# Issue #19's first target, whole runs: a paper-preset BEAR run of 20k steps, evaluations
# included (every 2,000 steps on 10 episodes, as the parity runs), in the fp32 default and in
# bf16 + pretrained, one after the other on one core, and the wall time of each from its
# result.json; the behaviour VAE's fit (cached afterwards) from the second run's debug.log.
#
#   studies/cheaper_runs/whole_run.sh [DATASET] [OUT]      # default walker2d-medium, /tmp/bearl-whole-run
#
# Say what ran on the other core beside it. The VAE cache is put in OUT, so the fit is always
# measured (BEARL_CACHE).
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
DATASET=${1:-walker2d-medium}
OUT=${2:-/tmp/bearl-whole-run}
rm -rf "$OUT"
mkdir -p "$OUT"
export BEARL_CACHE="$OUT/cache" OMP_NUM_THREADS=1
common=(--algo BEAR --dataset "$DATASET" --preset paper --steps 20000 --eval_every 2000
        --eval_episodes 10 --threads 1 --progress false --log_dir "$OUT")
"$BIN/bearl" train "${common[@]}" --run_name fp32-joint
"$BIN/bearl" train "${common[@]}" --run_name bf16-pretrained --precision bf16 \
    --behavior_model pretrained
"$BIN/python" - "$OUT" <<'PY'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
t = {}
for name in ("fp32-joint", "bf16-pretrained"):
    r = json.loads((out / name / "result.json").read_text())
    t[name] = r["wall_time"]
    print(f"{name:16s} wall time {r['wall_time']:8.1f} s  final score {r['final_score']:.1f}")
m = re.search(r"VAE fitted alone for \d+ steps in ([\d.]+) s", (out / "bf16-pretrained" / "debug.log").read_text())
fit = float(m.group(1)) if m else 0.0
print(f"behaviour VAE fit (once per dataset, settings, seed, precision): {fit:.0f} s")
print(f"bf16 + pretrained / fp32: {t['bf16-pretrained'] / t['fp32-joint']:.2f} without the fit, "
      f"{(t['bf16-pretrained'] + fit) / t['fp32-joint']:.2f} with it")
PY
