#!/usr/bin/env bash
# Does an exposure term help the causal model on TikTok's (exposure-biased) valid split? The rule,
# fixed before these runs, is in docs/RESULTS.md ("Exposure term, second look"): each candidate
# against configs/tiktok_causal.yaml on the same seeds, valid Recall@20 only.
#
#   runs/tiktok_causal_b8192_s<seed>       configs/tiktok_causal.yaml (the name of the runs that adopted
#                                          batch 8192: the config's values since; skipped when present)
#   runs/tiktok_causal_itembias_s<seed>    --model.causal.exposure.mode=item_bias (a learned b_i per item)
#   runs/tiktok_causal_degree025_s<seed>   --model.causal.exposure.mode=degree --model.causal.exposure.gamma=0.25
#
#   JOBS=2 SEEDS="1 2 3" EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_exposure_confirm.sh
#   .venv/bin/python -m trainer.report --group-seeds runs/tiktok_causal_{b8192,itembias,degree025}_s{1,2,3}
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-1 2 3}
source experiments/lib.sh

for seed in $SEEDS; do
  train "tiktok_causal_b8192_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}"
  train "tiktok_causal_itembias_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.causal.exposure.mode=item_bias
  train "tiktok_causal_degree025_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.causal.exposure.mode=degree --model.causal.exposure.gamma=0.25
done
finish
