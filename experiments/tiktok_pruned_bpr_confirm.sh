#!/usr/bin/env bash
# Does dropping the pairs the causal subgraph prunes from the BPR loss (the simulator's choice,
# docs/RESULTS.md "Simulator: pruned pairs in the BPR loss") help on TikTok? The rule, fixed before
# these runs, is in docs/RESULTS.md ("TikTok: pruned pairs in the BPR loss"): valid Recall@20 only.
#
#   runs/tiktok_causal_pbw1_s<seed>   configs/tiktok_causal.yaml (pruned_bpr_weight 1, the config's)
#   runs/tiktok_causal_pbw0_s<seed>   --model.causal.frontdoor.pruned_bpr_weight=0
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_pruned_bpr_confirm.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "1 2 3"),
# LOGS, EXTRA_ARGS. The summary printed at the end is `python -m trainer.report --group-seeds`.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-1 2 3}
source experiments/lib.sh

for seed in $SEEDS; do
  train "tiktok_causal_pbw1_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}"
  train "tiktok_causal_pbw0_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.causal.frontdoor.pruned_bpr_weight=0
done
finish
report_groups tiktok_causal_pbw1 tiktok_causal_pbw0
