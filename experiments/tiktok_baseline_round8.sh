#!/usr/bin/env bash
# The baselines are offered what the causal model took in the eighth DNS round (docs/RESULTS.md
# "TikTok: dynamic negative sampling"): LightGCN and FREEDOM the pools of 2 after the DNS warm
# start (train.negative_candidates_after); the popularity offset as each baseline's own sweep of
# its seeds-table runs chose it (`python -m trainer.popularity_offset`: 0 for LightGCN and
# FREEDOM, so none; +0.2 for VBPR, which cannot score candidate pools). A baseline's new setting
# replaces its seeds-table rows if its mean best valid Recall@20 over the seeds is higher.
#
#   runs/tiktok_<lightgcn|freedom>_dim128_dns2_s<seed>   128 wide, warm start, then pools of 2
#   runs/tiktok_vbpr_dim128_pop_s<seed>                  128 wide, eval.popularity_offset +0.2
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_baseline_round8.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default "0 1 2"), LOGS,
# EXTRA_ARGS. The summary is `python -m trainer.report --group-seeds` of these runs next to the
# seeds table's (tiktok_<model>_dim128_dns_s<seed>, tiktok_vbpr_dim128_s<seed>), which must be in RUNS too.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
VBPR_OFFSET=${VBPR_OFFSET:-0.2}

for seed in $SEEDS; do
  for model in lightgcn freedom; do
    train "tiktok_${model}_dim128_dns2_s${seed}" "configs/tiktok_${model}.yaml" "--run.seed=${seed}" \
        --model.embedding_dim=128 --train.negative_candidates=16 --train.negative_candidate_epochs=5 \
        --train.negative_candidates_after=2
  done
  train "tiktok_vbpr_dim128_pop_s${seed}" configs/tiktok_vbpr.yaml "--run.seed=${seed}" \
      --model.embedding_dim=128 "--eval.popularity_offset=${VBPR_OFFSET}"
done
finish
report_groups tiktok_lightgcn_dim128_dns tiktok_lightgcn_dim128_dns2 tiktok_freedom_dim128_dns \
    tiktok_freedom_dim128_dns2 tiktok_vbpr_dim128 tiktok_vbpr_dim128_pop
