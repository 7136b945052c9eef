#!/usr/bin/env bash
# The long runs of this round, restarted in the background in one command at the start of a
# session (docs/results.md, "The 200k-step study"): put back the checkpoints carried over from
# the last session, then one core for the 200k-step study (issue #20) and one for the parity runs
# (issue #19), each one torch thread, and the watcher that keeps their checkpoints for the next
# session. Finished trials are skipped, interrupted ones resume. Logs: $LOGS (default
# ../logs beside the checkout, never inside it).
#
#   experiments/continue_runs.sh              # all three
#   experiments/continue_runs.sh study        # only the study (and the watcher)
#
# Before a session stops: python experiments/carry_checkpoints.py save (the watcher saves
# every five minutes too).
set -u
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
LOGS=${LOGS:-../logs}
mkdir -p "$LOGS"
what=${1:-all}

"$BIN/python" experiments/carry_checkpoints.py restore
if [ "$what" = all ] || [ "$what" = study ]; then
  OMP_NUM_THREADS=1 nohup "$BIN/bearl" sweep experiments/study_200k.yaml --local \
    >> "$LOGS/study.log" 2>&1 &
  echo "study: pid $! (log $LOGS/study.log)"
fi
if [ "$what" = all ] || [ "$what" = parity ]; then
  BEARL="$BIN/bearl" nohup experiments/parity_20k.sh >> "$LOGS/parity.log" 2>&1 &
  echo "parity: pid $! (log $LOGS/parity.log)"
fi
if ! pgrep -f "carry_checkpoints.py watch" > /dev/null; then
  nohup nice "$BIN/python" experiments/carry_checkpoints.py watch --every 300 \
    >> "$LOGS/carry.log" 2>&1 &
  echo "checkpoint watcher: pid $! (log $LOGS/carry.log)"
fi
