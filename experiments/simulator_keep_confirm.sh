#!/usr/bin/env bash
# Should the front-door prune more, now that pruned pairs leave the BPR loss? Keeping more (0.8)
# lost on unbiased_valid (docs/RESULTS.md, "Simulator: a longer epoch budget"); this tries the
# other direction. The rule, fixed before these runs, is in docs/RESULTS.md ("Simulator: how much
# to prune"): every run selects its epoch on unbiased_valid, fresh seeds, unbiased_test never read.
#
#   runs/sim_ep060_s<seed>    configs/synthetic_causal.yaml (keep ratio 0.67): the same runs as
#                             experiments/simulator_epochs_confirm.sh's, trained if missing
#   runs/sim_keep058_s<seed>  --model.causal.frontdoor.keep_ratio=0.58
#   runs/sim_keep050_s<seed>  --model.causal.frontdoor.keep_ratio=0.5
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/simulator_keep_confirm.sh
#
# Environment: SEEDS (default "3 4 5"), DATA, BATCH (experiments/lib.sh, sim_args) and RUNS, JOBS,
# LOGS, EXTRA_ARGS, PY, DRY_RUN of experiments/lib.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-3 4 5}
source experiments/lib.sh
sim_args

for seed in $SEEDS; do
  train "sim_ep060_s${seed}" configs/synthetic_causal.yaml "--run.seed=${seed}" "${SIM_COMMON[@]}"
  for keep in 058 050; do
    train "sim_keep${keep}_s${seed}" configs/synthetic_causal.yaml "--run.seed=${seed}" "${SIM_COMMON[@]}" \
        "--model.causal.frontdoor.keep_ratio=${keep:0:1}.${keep:1}"
  done
done
finish
report_groups sim_ep060 sim_keep058 sim_keep050
