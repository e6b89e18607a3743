#!/usr/bin/env bash
# The sampled-softmax ranking term (`model.loss: softmax`, models/bpr.py) for the causal model on
# TikTok, at three temperatures; exploratory, valid only (the rule that reads these runs, fixed
# before them, is in docs/RESULTS.md "TikTok: a sampled-softmax ranking term"). Default SEEDS=0;
# SEEDS="7 8 9" VARIANTS=<the chosen one> is the confirmation.
#
#   runs/tiktok_causal_s<seed>               configs/tiktok_causal.yaml (BPR; skipped when present)
#   runs/tiktok_causal_softmax_t1_s<seed>    --model.loss=softmax --model.softmax_temperature=1.0
#   runs/tiktok_causal_softmax_t02_s<seed>   ... temperature 0.2
#   runs/tiktok_causal_softmax_t005_s<seed>  ... temperature 0.05
#   second round (VARIANTS="softmax_t02_lr3e4 softmax_t02_lr1e4 softmax_t005_lr3e4 softmax_t005_lr1e4"):
#   runs/tiktok_causal_softmax_t<T>_lr<L>_s<seed>  temperature T and --train.learning_rate=3e-4 / 1e-4
#                                          (the first round peaked within 4-11 epochs, then overfitted)
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_softmax_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh
VARIANTS=${VARIANTS:-softmax_t1 softmax_t02 softmax_t005}

# overrides VARIANT: the variant's overrides beyond the loss (softmax_t<T>[_lr<L>]).
overrides() {
  local temp lr=""
  case ${1%_lr*} in
    softmax_t1)   temp=1.0 ;;
    softmax_t02)  temp=0.2 ;;
    softmax_t005) temp=0.05 ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
  case $1 in
    *_lr3e4) lr=3e-4 ;;
    *_lr1e4) lr=1e-4 ;;
    *_lr*) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
  echo "--model.softmax_temperature=$temp${lr:+ --train.learning_rate=$lr}"
}
train_variants configs/tiktok_causal.yaml tiktok_causal overrides --model.loss=softmax
