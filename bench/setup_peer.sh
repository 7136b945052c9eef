#!/usr/bin/env bash
# A separate virtualenv for the d3rlpy peer benchmark (d3rlpy 2.8 pins gymnasium==1.0.0).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-d3rlpy}
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "${TORCH:-torch==2.13.0}"
"$VENV/bin/pip" install -q "d3rlpy==2.8.1"
# bearl's mujoco (and gymnasium's rendering dependency), so that d3rlpy's runs in
# studies/hopper_suite/peer_bear.py are evaluated in the same physics as bearl's
MUJOCO=$(.venv/bin/python -c "import mujoco; print(mujoco.__version__)")
"$VENV/bin/pip" install -q "mujoco==$MUJOCO" imageio
echo "peer venv ready: $VENV (bearl bench finds it there)"
