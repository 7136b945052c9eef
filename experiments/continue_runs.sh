#!/usr/bin/env bash
# The long runs of this round, restarted in the background in one command at the start of a
# session (docs/results.md, "The 200k-step study"): put back the checkpoints carried over from
# the last session, then two chains of work, one per core, each one torch thread:
#   core A: the 200k-step study (issue #20): stage 1, then stages 2 and 3, the two settings
#           probes (experiments/study_200k_settings.yaml), then the modern references' hopper
#           suite and their 200k-step seed 0 (issue #23);
#   core B: the parity runs (issue #19) and their follow-up (parity_20k_followup.yaml), then
#           stages 2 and 3, the settings probes, the modern references' 200k-step runs
#           and their hopper suite beside core A (two sweeps of one spec share its trials
#           through the run-folder locks);
# and the watcher that keeps the study's and the parity runs' checkpoints for the next session.
# The HalfCheetah TQC behaviour run of issue #22 is no longer in the chains: its expert is
# shipped (docs/datasets.md); `bearl data train-behavior --resume --out behavior/halfcheetah-tqc`
# continues it by hand (behavior/ is untracked and not ignored, so it stays by itself). Finished trials are skipped,
# interrupted ones resume. On a CPU without native bf16 (AMD Zen 3) the sweeps defer their bf16
# trials (exit status 3) and run the rest, so each chain goes on to its next sweep after one
# that deferred or failed; only stage 2 waits for stage 1 to be complete.
# Logs: $LOGS (default ../logs beside the checkout, never inside it).
#
#   experiments/continue_runs.sh              # all of it
#   experiments/continue_runs.sh study        # only core A's chain (and the watcher)
#   experiments/continue_runs.sh parity       # only core B's chain
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
  # stage 2 starts only once stage 1 has finished every trial (a sweep exits 0 only then)
  OMP_NUM_THREADS=1 nohup sh -c "'$BIN/bearl' sweep experiments/study_200k.yaml --local &&
    '$BIN/bearl' sweep experiments/study_200k_stage2.yaml --local;
    '$BIN/bearl' sweep experiments/study_200k_stage3.yaml --local;
    '$BIN/bearl' sweep experiments/study_200k_settings.yaml --local;
    '$BIN/bearl' sweep experiments/hopper_suite_modern.yaml --local;
    '$BIN/bearl' sweep experiments/study_200k_modern.yaml --local" >> "$LOGS/study.log" 2>&1 &
  echo "study: pid $! (log $LOGS/study.log)"
fi
if [ "$what" = all ] || [ "$what" = parity ]; then
  nohup sh -c "BEARL='$BIN/bearl' experiments/parity_20k.sh >> '$LOGS/parity.log' 2>&1;
    OMP_NUM_THREADS=1 '$BIN/bearl' sweep experiments/parity_20k_followup.yaml --local \
      >> '$LOGS/parity.log' 2>&1;
    OMP_NUM_THREADS=1 '$BIN/bearl' sweep experiments/study_200k_stage2.yaml --local;
    OMP_NUM_THREADS=1 '$BIN/bearl' sweep experiments/study_200k_stage3.yaml --local;
    OMP_NUM_THREADS=1 '$BIN/bearl' sweep experiments/study_200k_settings.yaml --local;
    OMP_NUM_THREADS=1 '$BIN/bearl' sweep experiments/study_200k_modern.yaml --local;
    OMP_NUM_THREADS=1 '$BIN/bearl' sweep experiments/hopper_suite_modern.yaml --local" \
    >> "$LOGS/core_b.log" 2>&1 &
  echo "core B: pid $! (then parity: $LOGS/parity.log; then stage 2 and the modern references: $LOGS/core_b.log)"
fi
if ! pgrep -f "carry_checkpoints.py watch" > /dev/null; then
  nohup nice "$BIN/python" experiments/carry_checkpoints.py watch --every 300 \
    >> "$LOGS/carry.log" 2>&1 &
  echo "checkpoint watcher: pid $! (log $LOGS/carry.log)"
fi
