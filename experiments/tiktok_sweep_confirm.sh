#!/usr/bin/env bash
# Confirms a Tune sweep's best TikTok configuration on fresh seeds (docs/RESULTS.md, "A Ray Tune
# sweep around the selected configuration"): both sides trained at the same commit, same command.
#
#   runs/tiktok_causal_current_s<seed>   configs/tiktok_causal.yaml
#   runs/tiktok_causal_swept_s<seed>     the sweep's best_config.yaml (SWEEP, default
#                                        runs/tiktok_causal_sweep/best_config.yaml)
#
#   JOBS=2 SEEDS="1 2 3" EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_sweep_confirm.sh
#   .venv/bin/python -m trainer.report runs/tiktok_causal_current_s{1,2,3} runs/tiktok_causal_swept_s{1,2,3}
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh

SWEEP=${SWEEP:-runs/tiktok_causal_sweep/best_config.yaml}
if [[ ! -f $SWEEP ]]; then
  echo "error: no sweep result at $SWEEP (run the sweep of docs/RESULTS.md first, or set SWEEP)" >&2
  exit 2
fi

for seed in $SEEDS; do
  train "tiktok_causal_current_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}"
  train "tiktok_causal_swept_s${seed}" "$SWEEP" "--run.seed=${seed}"
done
finish
