#!/usr/bin/env bash
# Confirmation, on fresh seeds, of the second capacity round's candidates
# (experiments/tiktok_capacity_probe2.sh; the rule, fixed before the probe, is in docs/RESULTS.md
# "TikTok: capacity probes, second round"): on seed 0 pruned pairs back in the BPR loss came
# first and 256-wide ID rows second, so the first and the combination of the two go on. Mean best
# valid Recall@20 over seeds 7-9, valid NDCG@20 allowed to fall by at most 0.002.
#
#   runs/tiktok_causal_s<seed>                     configs/tiktok_causal.yaml
#   runs/tiktok_causal_keeppruned_s<seed>          --model.causal.frontdoor.pruned_bpr_weight=1.0
#   runs/tiktok_causal_keeppruned_dim256_s<seed>   the same and --model.embedding_dim=256
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_capacity_confirm2.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "7 8 9"),
# LOGS, EXTRA_ARGS. The summary printed at the end is `python -m trainer.report --group-seeds`.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-7 8 9}
source experiments/lib.sh

for seed in $SEEDS; do
  train "tiktok_causal_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}"
  train "tiktok_causal_keeppruned_dim256_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.causal.frontdoor.pruned_bpr_weight=1.0 --model.embedding_dim=256
  train "tiktok_causal_keeppruned_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.causal.frontdoor.pruned_bpr_weight=1.0
done
finish
report_groups tiktok_causal tiktok_causal_keeppruned tiktok_causal_keeppruned_dim256
