#!/usr/bin/env bash
# Is a batch of 8192 as good as the configured 4096 on TikTok? The speed question of issue 6
# (docs/BENCHMARKS.md): the causal step's cost is mostly per step (the content path over every
# item), so half the steps make an epoch about half as long. The rule, fixed before these runs,
# is in docs/RESULTS.md ("Batch 8192"): both sides trained here, at the same commit.
#
#   runs/tiktok_causal_b4096_s<seed>   configs/tiktok_causal.yaml with BASE_ARGS (default: batch 4096,
#                                      learning rate 1e-3, min_epochs 40: the configuration before
#                                      this comparison, which the config file held then)
#   runs/tiktok_causal_b8192_s<seed>   the same with BATCH_ARGS (default: batch 8192, learning
#                                      rate 1.5e-3 (x sqrt 2), min_epochs 60: twice the batch is
#                                      half the updates per epoch, so the popularity plateau of
#                                      the first ~20 epochs lasts longer; the config file's values
#                                      since it was adopted)
#
#   JOBS=2 SEEDS="1 2 3" EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_batch_confirm.sh
#   .venv/bin/python -m trainer.report --group-seeds runs/tiktok_causal_b4096_s{1,2,3} runs/tiktok_causal_b8192_s{1,2,3}
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh

read -r -a BASE <<< "${BASE_ARGS:---train.batch_size=4096 --train.learning_rate=1e-3 --train.min_epochs=40}"
read -r -a BATCH <<< "${BATCH_ARGS:---train.batch_size=8192 --train.learning_rate=1.5e-3 --train.min_epochs=60}"

for seed in $SEEDS; do
  train "tiktok_causal_b4096_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" "${BASE[@]}"
  train "tiktok_causal_b8192_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" "${BATCH[@]}"
done
finish
