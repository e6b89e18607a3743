#!/usr/bin/env bash
# Second round of exploratory probes of the causal model on TikTok, at the 128-wide configuration
# the first round adopted; one seed, valid only (the rule that reads them, fixed before these runs,
# is in docs/RESULTS.md "TikTok: capacity probes, second round").
#
#   runs/tiktok_causal_s<seed>              configs/tiktok_causal.yaml (the seeds table's name; skipped when present)
#   runs/tiktok_causal_dim256_s<seed>       --model.embedding_dim=256 (width helped every model at 128)
#   runs/tiktok_causal_layers3_s<seed>      --model.num_layers=3 (second on seed 0 in the first round)
#   runs/tiktok_causal_keeppruned_s<seed>   --model.causal.frontdoor.pruned_bpr_weight=1.0 (pruned
#                                           pairs train the ranking again: chosen at 64 wide, and
#                                           the front-door costs Recall@20 at 128)
#   runs/tiktok_causal_reg1e3_s<seed>       --model.reg_weight=1e-3 (wider rows overfit sooner)
#
#   JOBS=2 SEEDS=0 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_capacity_probe2.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh

for seed in $SEEDS; do
  train "tiktok_causal_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}"
  train "tiktok_causal_dim256_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.embedding_dim=256
  train "tiktok_causal_layers3_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.num_layers=3
  train "tiktok_causal_keeppruned_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.causal.frontdoor.pruned_bpr_weight=1.0
  train "tiktok_causal_reg1e3_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" \
      --model.reg_weight=1e-3
done
finish
report_groups tiktok_causal tiktok_causal_dim256 tiktok_causal_layers3 tiktok_causal_keeppruned tiktok_causal_reg1e3
