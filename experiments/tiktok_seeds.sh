#!/usr/bin/env bash
# The TikTok comparison over three seeds: LightGCN, VBPR, FREEDOM and the causal model, each from
# its configs/tiktok_<model>.yaml with only the seed and the run name changed:
#
#   runs/tiktok_<model>_s<seed>      model in: lightgcn vbpr freedom causal; seed in: 0 1 2
#
#   bash experiments/tiktok_seeds.sh                      # one run at a time, into runs/
#   JOBS=2 RUNS=/data/runs bash experiments/tiktok_seeds.sh
#   DRY_RUN=1 bash experiments/tiktok_seeds.sh            # print what would run
#
# Finished runs (metrics.json present) are skipped, so the script can be started again after an
# interruption; see experiments/lib.sh for RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS. MODELS overrides
# the model list. Needs the dataset: make data-real. Then: bash experiments/tiktok_tables.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh

MODELS=${MODELS:-lightgcn vbpr freedom causal}

for seed in $SEEDS; do          # seed-major: a partial sweep already has every model at seed 0
  for model in $MODELS; do
    train "tiktok_${model}_s${seed}" "configs/tiktok_${model}.yaml" "--run.seed=${seed}"
  done
done
finish
