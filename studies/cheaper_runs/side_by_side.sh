#!/usr/bin/env bash
# How much do two processes on a 2-core machine slow each other? (docs/performance.md, "bf16
# beside another training".) Pauses the given training processes (SIGSTOP), then times one
# `bearl bench` configuration three ways: alone, two copies at once, and beside the first of
# the given trainings resumed; every training is resumed on exit, whatever happens. Each
# pause and resume is logged to $LOGS/pauses.log (default ../logs beside the checkout), so the
# figures can say when the trainings stood still.
#
#   studies/cheaper_runs/side_by_side.sh PID [PID...]                 # BEAR, paper preset, bf16
#   ALGO=BCQ PRECISION=fp32 studies/cheaper_runs/side_by_side.sh PID  # another configuration
#
# The PIDs are the trainings' worker processes (`bearl sweep` runs each trial in a spawned
# worker: `pgrep -f multiprocessing.spawn`). The rates of the trainings themselves, side by
# side with nothing else running, are their debug.log rows.
set -u
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: studies/cheaper_runs/side_by_side.sh PID [PID...] (the trainings to pause)" >&2; exit 2; }
BIN=${BIN:-.venv/bin}
LOGS=${LOGS:-../logs}
ALGO=${ALGO:-BEAR}
PRECISION=${PRECISION:-bf16}
OUT=${OUT:-studies/speed/results/$(date -u +%F)-side-by-side-$ALGO-$PRECISION}
mkdir -p "$LOGS" "$OUT"
export OMP_NUM_THREADS=1
B=(--algo "$ALGO" --preset paper --precision "$PRECISION" --no-peer --no-extras --threads 1
   --steps "${STEPS:-300}" --repeats 3)

log() { echo "$(date -u +%FT%T) $* (studies/cheaper_runs/side_by_side.sh)" >> "$LOGS/pauses.log"; }
resume() { kill -CONT "$@" 2>/dev/null; log "SIGCONT $*"; }
trap 'resume "$@"' EXIT
kill -STOP "$@" || exit 1
log "SIGSTOP $*"
sleep 2
echo "== alone"
"$BIN/bearl" bench "${B[@]}" --json "$OUT/alone.json" | grep -E "upd/s|native"
echo "== two copies at once"
"$BIN/bearl" bench "${B[@]}" --json "$OUT/copy1.json" > "$OUT/copy1.txt" 2>&1 &
"$BIN/bearl" bench "${B[@]}" --json "$OUT/copy2.json" > "$OUT/copy2.txt" 2>&1
wait
grep -h "upd/s" "$OUT/copy1.txt" "$OUT/copy2.txt"
rm -f "$OUT/copy1.txt" "$OUT/copy2.txt"
resume "$1"
sleep 20  # the training back to its pace before timing beside it
echo "== beside the training $1"
"$BIN/bearl" bench "${B[@]}" --json "$OUT/beside-training.json" | grep -E "upd/s"
