#!/usr/bin/env bash
# On a GPU machine: train the default model on the packed crops, export it, then check the
# GPU worker path against the CPU path. Everything it produces goes under $OUT.
#   python -m models.training.dataset --data ../shared/data/train --out .pack/train   # beforehand
#   python -m models.training.dataset --data ../shared/data/val --out .pack/val
#   OUT=out BUDGET=400 scripts/gpu_train_and_check.sh
set -u
OUT=${OUT:-out}
BUDGET=${BUDGET:-400}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
"$PYTHON" -c "import sys, torch, onnxruntime as o; print(sys.version.split()[0], torch.__version__, o.__version__, o.get_available_providers())"
timeout $((BUDGET + 60)) "$PYTHON" -m models.training.train --data .pack/train --val .pack/val \
  --out "$OUT/run" --checkpoint-dir /tmp/colorize-ckpt --time-budget "$BUDGET" --device "$DEVICE" --seed 0 \
  ${TRAIN_ARGS:-} 2>&1 | tee "$OUT/train.log"
"$PYTHON" -m models.training.export --run "$OUT/run" --out /tmp/colorize-models --name colorize-small 2>&1 | grep -v Warning
timeout 200 "$PYTHON" bench/gpu_check.py --model-dir /tmp/colorize-models --model colorize-small \
  --images .pack/val --eccv16 ${CHECK_ARGS:-} --json "$OUT/gpu_check.json" 2>&1 | grep -v Warning
