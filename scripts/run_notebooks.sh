#!/usr/bin/env bash
# Execute every notebook top to bottom (GENSAR_PROFILE, default small); keep executed copies.
set -euo pipefail
cd "$(dirname "$0")/.."
export GENSAR_PROFILE=${GENSAR_PROFILE:-small}
export GENSAR_DATASET=${GENSAR_DATASET:-synthetic}
OUT=notebooks/executed
mkdir -p "$OUT" figures
for nb in notebooks/[0-9][0-9]_*.ipynb; do
  start=$(date +%s)
  echo "== $nb (profile $GENSAR_PROFILE, dataset $GENSAR_DATASET)"
  .venv/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=3600 \
    --ExecutePreprocessor.kernel_name=python3 --output-dir "$OUT" "$nb" --log-level WARN
  echo "   done in $(( $(date +%s) - start )) s -> $OUT/$(basename "$nb")"
done
