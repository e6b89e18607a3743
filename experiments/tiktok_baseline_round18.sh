#!/usr/bin/env bash
# The baselines are offered what the causal model took in the eighteenth DNS round (docs/RESULTS.md
# "TikTok: dynamic negative sampling"): LightGCN the backbone's degree normalisation r = 0.6
# (model.lightgcn.norm_power; FREEDOM propagates with its own adjacency and has no such key); the
# popularity offset as each baseline's own sweep of its seeds-table runs chose it (`python -m
# trainer.popularity_offset`: 0 for LightGCN and FREEDOM, so none; +0.2 for VBPR). A baseline's new
# setting replaces its seeds-table rows if its mean best valid Recall@20 over the seeds is higher.
#
#   runs/tiktok_lightgcn_dim128_dns_norm060_s<seed>   128 wide, the DNS warm start, r = 0.6
#   runs/tiktok_vbpr_dim128_pop_s<seed>               128 wide, eval.popularity_offset +0.2
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_baseline_round18.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default "0 1 2"), LOGS,
# EXTRA_ARGS. The summary is `python -m trainer.report --group-seeds` of these runs next to the
# seeds table's (tiktok_lightgcn_dim128_dns_s<seed>, tiktok_vbpr_dim128_s<seed>), which must be in RUNS too.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
VBPR_OFFSET=${VBPR_OFFSET:-0.2}

for seed in $SEEDS; do
  train "tiktok_lightgcn_dim128_dns_norm060_s${seed}" configs/tiktok_lightgcn.yaml "--run.seed=${seed}" \
      --model.embedding_dim=128 --train.negative_candidates=16 --train.negative_candidate_epochs=5 \
      --model.lightgcn.norm_power=0.6
  train "tiktok_vbpr_dim128_pop_s${seed}" configs/tiktok_vbpr.yaml "--run.seed=${seed}" \
      --model.embedding_dim=128 "--eval.popularity_offset=${VBPR_OFFSET}"
done
finish
report_groups tiktok_lightgcn_dim128_dns tiktok_lightgcn_dim128_dns_norm060 tiktok_vbpr_dim128 tiktok_vbpr_dim128_pop
