#!/usr/bin/env bash
# Exploratory probes of the causal model's capacity on TikTok, one seed, valid only (the rule that
# reads them, fixed before these runs, is in docs/RESULTS.md "TikTok: capacity probes"). None of
# these settings had been tried at the current configuration: the sweep (tune/spaces/causal_tiktok.yaml)
# moved only loss weights, rates and code counts.
#
#   runs/tiktok_causal_s<seed>             configs/tiktok_causal.yaml (the seeds table's name; skipped when present)
#   runs/tiktok_causal_dim128_s<seed>      --model.embedding_dim=128
#   runs/tiktok_causal_layers3_s<seed>     --model.num_layers=3 (our TikTok LightGCN's depth)
#   runs/tiktok_causal_usercontent_s<seed> --model.causal.user_content_in_score=true
#   runs/tiktok_causal_fine256_s<seed>     --model.causal.backdoor.fine_codes=256
#
#   JOBS=2 SEEDS=0 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_capacity_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh

for seed in $SEEDS; do
  train "tiktok_causal_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}"
  train "tiktok_causal_dim128_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.embedding_dim=128
  train "tiktok_causal_layers3_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.num_layers=3
  train "tiktok_causal_usercontent_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.causal.user_content_in_score=true
  train "tiktok_causal_fine256_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.causal.backdoor.fine_codes=256
done
finish
report_groups tiktok_causal tiktok_causal_dim128 tiktok_causal_layers3 tiktok_causal_usercontent tiktok_causal_fine256
