#!/usr/bin/env bash
# Should the pairs the causal subgraph prunes stop training the ranking? The rule, fixed before
# these runs, is in docs/RESULTS.md ("Simulator: pruned pairs in the BPR loss"): each candidate
# `model.causal.frontdoor.pruned_bpr_weight` against configs/synthetic_causal.yaml (weight 1) on
# fresh seeds, every run selecting its epoch on the simulator's unbiased_valid split.
#
#   runs/sim_pbw_w100_s<seed>   configs/synthetic_causal.yaml (pruned_bpr_weight 1, the config's)
#   runs/sim_pbw_w025_s<seed>   --model.causal.frontdoor.pruned_bpr_weight=0.25
#   runs/sim_pbw_w000_s<seed>   --model.causal.frontdoor.pruned_bpr_weight=0 (pruned pairs dropped)
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/simulator_pruned_bpr_confirm.sh
#
# Environment (and RUNS, JOBS, LOGS, EXTRA_ARGS, PY, DRY_RUN of experiments/lib.sh):
#   SEEDS  default "3 4 5" (fresh: the checks use 0 1 2, the sweep used 0)
#   DATA   the checks dataset (default data/synthetic-checks, made by experiments/simulator_checks.sh)
#   BATCH  --train.batch_size, as experiments/simulator_checks.sh (default 4096)
# The summary printed at the end is `python -m trainer.report --group-seeds` over the three groups.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-3 4 5}
source experiments/lib.sh

sim_args

for seed in $SEEDS; do
  train "sim_pbw_w100_s${seed}" configs/synthetic_causal.yaml "--run.seed=${seed}" "${SIM_COMMON[@]}"
  train "sim_pbw_w025_s${seed}" configs/synthetic_causal.yaml "--run.seed=${seed}" "${SIM_COMMON[@]}" \
      --model.causal.frontdoor.pruned_bpr_weight=0.25
  train "sim_pbw_w000_s${seed}" configs/synthetic_causal.yaml "--run.seed=${seed}" "${SIM_COMMON[@]}" \
      --model.causal.frontdoor.pruned_bpr_weight=0
done
finish
report_groups sim_pbw_w100 sim_pbw_w025 sim_pbw_w000
