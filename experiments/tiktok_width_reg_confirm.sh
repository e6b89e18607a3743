#!/usr/bin/env bash
# Width and L2 weight at the current TikTok configuration, on fresh seeds 7-9 (docs/RESULTS.md
# "TikTok: width and L2 weight at the current configuration"): 256-wide ID rows were a little
# above 128 twice (seed 0 of the second capacity round, and with the pruned pairs back on seeds
# 7-9) but never alone on fresh seeds; a tenfold L2 weight lost, a tenfold smaller one was never tried.
#
#   runs/tiktok_causal_s<seed>          configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_dim256_s<seed>   --model.embedding_dim=256
#   runs/tiktok_causal_reg1e5_s<seed>   --model.reg_weight=1e-5
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_width_reg_confirm.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "7 8 9"), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-7 8 9}
source experiments/lib.sh
VARIANTS=${VARIANTS:-dim256 reg1e5}

override() {
  case $1 in
    dim256) echo "--model.embedding_dim=256" ;;
    reg1e5) echo "--model.reg_weight=1e-5" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
