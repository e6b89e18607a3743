#!/usr/bin/env bash
# The user's content profile in the score (model.causal.user_content_in_score, docs/MODEL.md §5)
# at the current TikTok configuration, on fresh seeds 7-9 (docs/RESULTS.md "TikTok: the user's
# content in the score, second look"). It passed its rule at 64-wide rows (capacity probes, first
# round) and lost only to the wider rows adopted instead; it was never tried on top of them.
#
#   runs/tiktok_causal_s<seed>              configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_usercontent_s<seed>  --model.causal.user_content_in_score=true
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_usercontent_confirm.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "7 8 9"), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-7 8 9}
source experiments/lib.sh
VARIANTS=${VARIANTS:-usercontent}

override() {
  case $1 in
    usercontent) echo "--model.causal.user_content_in_score=true" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
