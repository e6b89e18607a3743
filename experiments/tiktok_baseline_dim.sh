#!/usr/bin/env bash
# The baselines get the causal model's wider ID rows too: each of LightGCN, FREEDOM and VBPR is
# trained with --model.embedding_dim=128 on the seeds table's seeds, and its 128-wide setting
# replaces its config's in the seeds table if its mean best valid Recall@20 over those seeds is
# higher (the rule, fixed before these runs, is in docs/RESULTS.md "TikTok: capacity probes").
#
#   runs/tiktok_<model>_dim128_s<seed>   configs/tiktok_<model>.yaml --model.embedding_dim=128
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_baseline_dim.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default "0 1 2"),
# LOGS, EXTRA_ARGS. The summary printed at the end is `python -m trainer.report --group-seeds`
# of these runs next to the seeds table's runs of the same models.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh
MODELS=(lightgcn freedom vbpr)

for seed in $SEEDS; do
  for model in "${MODELS[@]}"; do
    train "tiktok_${model}_dim128_s${seed}" "configs/tiktok_${model}.yaml" "--run.seed=${seed}" \
        --model.embedding_dim=128
  done
done
finish
report_groups tiktok_lightgcn tiktok_lightgcn_dim128 tiktok_freedom tiktok_freedom_dim128 tiktok_vbpr tiktok_vbpr_dim128
