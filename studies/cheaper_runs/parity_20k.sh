#!/usr/bin/env bash
# The parity runs of docs/performance.md (issue #19), one after another on one core; run again
# after any interruption: finished trials are skipped, interrupted ones resume.
set -u
cd "$(dirname "$0")/.."
BEARL=${BEARL:-.venv/bin/bearl}
for spec in parity_20k_fp32_bf16 parity_20k_hopper_bf16 parity_20k_pretrained; do
  OMP_NUM_THREADS=1 "$BEARL" sweep "experiments/$spec.yaml" --local || exit $?
done
