#!/usr/bin/env bash
# More than one negative per positive on TikTok (docs/RESULTS.md "TikTok: k negatives per
# positive"): train.negatives = k puts each positive into its batch k times, each with its own
# uniform negative, so the BPR term is the mean over k negatives (the batch still counts positives).
#
#   runs/tiktok_causal_s<seed>        configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_neg4_s<seed>   4 negatives per positive
#   runs/tiktok_causal_neg8_s<seed>   8 negatives per positive
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_negatives_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "0"), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh
VARIANTS=${VARIANTS-neg4 neg8}

override() {
  case $1 in
    neg4) echo "--train.negatives=4" ;;
    neg8) echo "--train.negatives=8" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
