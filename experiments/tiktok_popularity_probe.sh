#!/usr/bin/env bash
# A popularity offset at ranking time for the causal model on TikTok (docs/RESULTS.md "TikTok: a
# popularity offset at ranking time"): valid and test rank by score + beta * log(1 + n_i)
# (eval.popularity_offset; trainer/ranking.py), so the offset also chooses the epoch.
#
#   runs/tiktok_causal_s<seed>          configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_pop020_s<seed>   the same with beta = -0.2
#   runs/tiktok_causal_pop010_s<seed>   the same with beta = -0.1
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_popularity_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "22 23 24":
# seeds no run of this repository has used), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-22 23 24}
source experiments/lib.sh
VARIANTS=${VARIANTS-pop020}

override() {
  case $1 in
    pop020) echo "--eval.popularity_offset=-0.2" ;;
    pop010) echo "--eval.popularity_offset=-0.1" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
