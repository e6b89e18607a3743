#!/usr/bin/env bash
# The user-user and item-item views (`model.causal.views`, models/views.py, after MMHCL) for the
# causal model on TikTok; exploratory on seed 0, valid only (the rule that reads these runs, fixed
# before them, is in docs/RESULTS.md "TikTok: co-interaction and content views"). Default SEEDS=0;
# SEEDS="7 8 9" VARIANTS=<the chosen one> is the confirmation.
#
#   runs/tiktok_causal_s<seed>               configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_views_s<seed>         --model.causal.views.enabled=true (MMHCL's values)
#   runs/tiktok_causal_views_top10_s<seed>   the same, each user's 10 strongest co-interaction neighbours only
#   second round (VARIANTS="views_gated views_gated_l1"):
#   runs/tiktok_causal_views_gated_s<seed>     --model.causal.views.gated=true (g_v learned from 0)
#   runs/tiktok_causal_views_gated_l1_s<seed>  the same with one propagation step per view
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_views_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh
VARIANTS=${VARIANTS:-views views_top10}

# overrides VARIANT: the variant's overrides beyond switching the views on.
overrides() {
  case $1 in
    views)       echo "" ;;
    views_top10) echo "--model.causal.views.user_top_k=10" ;;
    views_gated) echo "--model.causal.views.gated=true" ;;
    views_gated_l1) echo "--model.causal.views.gated=true --model.causal.views.user_layers=1 --model.causal.views.item_layers=1" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal overrides --model.causal.views.enabled=true
