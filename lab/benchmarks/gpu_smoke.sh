#!/usr/bin/env bash
# The tiny profile end to end on a GPU (docs/scale.md): prints the device,
# the wall time of each run and the T5 training time from run.json. With two or more GPUs it also
# runs the same command data-parallel under torchrun. Usage: bash lab/benchmarks/gpu_smoke.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
OUT=${1:-$(mktemp -d -t gensar-gpu-smoke-XXXX)}
export GENSAR_CACHE="$OUT/cache" GENSAR_DEVICE=${GENSAR_DEVICE:-cuda}  # a fresh cache: every stage runs
"$PY" - <<'PYEOF'
import torch
from gensar_lib.devices import resolve_device
device = resolve_device()  # fails here, naming the setting, when the GPU is not usable
name = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
print(f"device: {device} ({name}), torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"{torch.cuda.device_count()} GPU(s)")
PYEOF

report() {  # $1: label, $2: output folder, $3: seconds
  "$PY" -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{sys.argv[2]}: {sys.argv[3]} s end to end (cold cache), \
T5 training {r['train_seconds']:.1f} s, ranks {r['ranks']}, device {r['device']}\")" "$2/run.json" "$1" "$3"
}

start=$SECONDS
"$PY" -m gensar_lib train --dataset synthetic --profile tiny --out "$OUT/one" > "$OUT/one.log" 2>&1
report "one process" "$OUT/one" $((SECONDS - start))
grep -E "^(rec|search) " "$OUT/one.log"

GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ]; then
  rm -rf "$GENSAR_CACHE/t5" "$GENSAR_CACHE/t5_work"  # upstream stages stay cached: time the T5 stage again
  start=$SECONDS
  "$PY" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" -m gensar_lib train \
    --dataset synthetic --profile tiny --out "$OUT/many" > "$OUT/many.log" 2>&1
  report "$GPUS processes" "$OUT/many" $((SECONDS - start))
  grep -E "^(training with|ran with)" "$OUT/many.log"
fi
echo "logs and results under $OUT"
