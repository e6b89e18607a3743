#!/usr/bin/env bash
# The baselines are offered the causal model's negative sampling (docs/RESULTS.md "TikTok: dynamic
# negative sampling"): LightGCN and FREEDOM, 128 wide as in the seeds table, each trained with the
# hardest of 16 uniform candidates per triple in the first 5 epochs (train.negative_candidates,
# train.negative_candidate_epochs); a baseline's DNS setting replaces its 128-wide one in the
# seeds table if its mean best valid Recall@20 over the seeds is higher. VBPR cannot score a
# candidate pool from its propagated rows (it is refused there) and keeps uniform negatives.
#
#   runs/tiktok_<model>_dim128_dns_s<seed>   configs/tiktok_<model>.yaml --model.embedding_dim=128 + DNS
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_baseline_dns.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default "0 1 2"), LOGS,
# EXTRA_ARGS. The summary is `python -m trainer.report --group-seeds` of these runs next to
# tiktok_<model>_dim128_s<seed> (experiments/tiktok_baseline_dim.sh), which must be in RUNS too.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
MODELS=(lightgcn freedom)

for seed in $SEEDS; do
  for model in "${MODELS[@]}"; do
    train "tiktok_${model}_dim128_dns_s${seed}" "configs/tiktok_${model}.yaml" "--run.seed=${seed}" \
        --model.embedding_dim=128 --train.negative_candidates=16 --train.negative_candidate_epochs=5
  done
done
finish
report_groups tiktok_lightgcn_dim128 tiktok_lightgcn_dim128_dns tiktok_freedom_dim128 tiktok_freedom_dim128_dns
