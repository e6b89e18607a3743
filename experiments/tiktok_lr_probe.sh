#!/usr/bin/env bash
# A plateau learning-rate schedule for the causal model on TikTok (docs/RESULTS.md "TikTok: a
# plateau learning-rate schedule"): valid R@20 jumps from one evaluation to the next at a constant
# rate and still creeps up after long stretches without a better score; halving the rate at each
# plateau (train.lr_schedule: plateau, not before epoch 30: the model sits at the popularity level
# for its first ~12 epochs) may let it settle. Straight on fresh seeds 7-9 (no seed-0 probe):
#
#   runs/tiktok_causal_s<seed>              configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_plateau_p5_s<seed>   halve the rate after every 5 evaluations without a better valid R@20
#   runs/tiktok_causal_plateau_p10_s<seed>  ... after every 10
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_lr_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "7 8 9"), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-7 8 9}
source experiments/lib.sh
VARIANTS=${VARIANTS:-plateau_p5 plateau_p10}

override() {
  local plateau="--train.lr_schedule=plateau --train.lr_decay_factor=0.5 --train.lr_decay_start_epoch=30"
  case $1 in
    plateau_p5)  echo "$plateau --train.lr_decay_patience=5" ;;
    plateau_p10) echo "$plateau --train.lr_decay_patience=10" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
