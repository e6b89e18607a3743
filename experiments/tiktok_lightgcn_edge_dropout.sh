#!/usr/bin/env bash
# LightGCN (128 wide, as in the seeds table) offered the causal model's edge dropout
# (docs/RESULTS.md "TikTok: edge dropout in the backbone"): it is adopted for LightGCN's row of
# the tables if its mean best valid Recall@20 over the seeds is higher than without it.
#
#   runs/tiktok_lightgcn_dim128_drop30_s<seed>   configs/tiktok_lightgcn.yaml --model.embedding_dim=128
#                                                --model.lightgcn.edge_keep=0.7
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_lightgcn_edge_dropout.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default "0 1 2"), LOGS,
# EXTRA_ARGS. The summary is `python -m trainer.report --group-seeds` of these runs next to
# tiktok_lightgcn_dim128_s<seed> (experiments/tiktok_baseline_dim.sh), which must be in RUNS too.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
KEEP=${KEEP:-0.7}

for seed in $SEEDS; do
  train "tiktok_lightgcn_dim128_drop30_s${seed}" configs/tiktok_lightgcn.yaml "--run.seed=${seed}" \
      --model.embedding_dim=128 "--model.lightgcn.edge_keep=${KEEP}"
done
finish
report_groups tiktok_lightgcn_dim128 tiktok_lightgcn_dim128_drop30
