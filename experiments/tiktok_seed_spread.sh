#!/usr/bin/env bash
# How far the seeds table's three seeds (0-2) speak for the configuration (docs/RESULTS.md "TikTok:
# the configuration and LightGCN on fourteen more seeds"): the causal model's configuration and
# LightGCN's seeds-table setting (128 wide, the DNS warm start, r = 0.6) trained on more seeds.
# Nothing is chosen with these runs; they measure the seed spread of test figures and whether the
# causal model's lead over LightGCN holds seed by seed.
#
#   runs/tiktok_causal_s<seed>                        configs/tiktok_causal.yaml
#   runs/tiktok_lightgcn_dim128_dns_norm060_s<seed>   as in experiments/tiktok_baseline_round18.sh
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_seed_spread.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "16 ... 29",
# the seeds the DNS rounds paired their variants on), LOGS, EXTRA_ARGS. Prints both groups' mean ±
# std and `python -m trainer.seed_pairs` of the two on test Recall@20 and NDCG@20.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-16 17 18 19 20 21 22 23 24 25 26 27 28 29}
source experiments/lib.sh

for seed in $SEEDS; do
  train "tiktok_causal_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}"
  train "tiktok_lightgcn_dim128_dns_norm060_s${seed}" configs/tiktok_lightgcn.yaml "--run.seed=${seed}" \
      --model.embedding_dim=128 --train.negative_candidates=16 --train.negative_candidate_epochs=5 \
      --model.lightgcn.norm_power=0.6
done
finish
report_groups tiktok_causal tiktok_lightgcn_dim128_dns_norm060
if [[ $DRY_RUN != 1 ]]; then
  causal=() lightgcn=()
  for seed in $SEEDS; do
    causal+=("$RUNS/tiktok_causal_s$seed")
    lightgcn+=("$RUNS/tiktok_lightgcn_dim128_dns_norm060_s$seed")
  done
  for metric in recall@20 ndcg@20; do
    "$PY" -m trainer.seed_pairs --split test --metric "$metric" --a "${causal[@]}" --b "${lightgcn[@]}"
  done
fi
