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

# temperature VARIANT: the softmax temperature of the variant.
temperature() {
  case $1 in
    softmax_t1)   echo 1.0 ;;
    softmax_t02)  echo 0.2 ;;
    softmax_t005) echo 0.05 ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
for variant in $VARIANTS; do temperature "$variant" > /dev/null; done  # a typo fails before anything starts

for seed in $SEEDS; do
  train "tiktok_causal_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}"
  for variant in $VARIANTS; do
    train "tiktok_causal_${variant}_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
        --model.loss=softmax "--model.softmax_temperature=$(temperature "$variant")"
  done
done
finish
groups=(tiktok_causal)
for variant in $VARIANTS; do groups+=("tiktok_causal_${variant}"); done
report_groups "${groups[@]}"
