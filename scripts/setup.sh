#!/usr/bin/env bash
# Create .venv with torch 2.13.0 (CPU) and gensar_lib in editable mode; quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.gensar-setup
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && "$VENV/bin/python" -c "import gensar_lib, torch" 2>/dev/null; then
  exit 0
fi
echo "Setting up $VENV (first run: a few minutes)..."
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first and pinned: a bare 'torch' lets pip fetch a multi-GB CUDA build.
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -e ".[test,book]"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name gensar --display-name "Python (gensar)" >/dev/null
touch "$STAMP"
echo "Setup done: $VENV"
