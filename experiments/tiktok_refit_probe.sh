#!/usr/bin/env bash
# A k-means re-fit of TikTok's codebook (docs/RESULTS.md "TikTok: a k-means re-fit of the
# codebook"): the codes start at step 1's encoder outputs, ẑ then drifts away (at the best
# checkpoint its items sit ~0.95 from the origin along one direction, the codes 0.65-0.85 out), and
# the nearest code takes every item. A re-fit (backdoor.refit_every / refit_start) puts the codes
# where the items are now.
#
#   runs/tiktok_causal_s<seed>              configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_refit5_s<seed>       re-fit at the start of epoch 11 and every 5 epochs after
#                                           (with the front-door's refreshes)
#   runs/tiktok_causal_refit10_s<seed>      ... every 10 epochs after epoch 11
#   runs/tiktok_causal_refit_once_s<seed>   once, at the start of epoch 11
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_refit_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "0"), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh
VARIANTS=${VARIANTS:-refit5 refit10 refit_once}

override() {
  local b="--model.causal.backdoor"
  case $1 in
    refit5)     echo "$b.refit_start=10 $b.refit_every=5" ;;
    refit10)    echo "$b.refit_start=10 $b.refit_every=10" ;;
    refit_once) echo "$b.refit_start=10 $b.refit_every=100000" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
