#!/usr/bin/env bash
# The configuration and LightGCN read under both selection protocols of the published TikTok
# figures (docs/RESULTS.md "TikTok: the valid-selected and the test-picked figure"): V, test at the
# best-valid epoch (ours, the issue's), and T, the best test figure over the epochs (picked on
# test; MDMNS's, GenRec-V1's and DiffMM's). Every run logs test at every evaluation
# (`eval.test_curve`, a diagnostic that selects nothing); training, selection and the V figures
# are those of the same runs without it. Nothing is chosen with these runs.
#
#   runs/tiktok_causal_tc_s<seed>                        configs/tiktok_causal.yaml
#   runs/tiktok_lightgcn_dim128_dns_norm060_tc_s<seed>   LightGCN's seeds-table setting
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_test_picked.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "0 1 2 16
# 17 18 19 20 21": the seeds table's and the probes' paired seeds), LOGS, EXTRA_ARGS. Prints
# `python -m trainer.picked_epoch --group-seeds` of both groups.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0 1 2 16 17 18 19 20 21}
source experiments/lib.sh

for seed in $SEEDS; do
  train "tiktok_causal_tc_s${seed}" configs/tiktok_causal.yaml "--run.seed=${seed}" --eval.test_curve=true
  train "tiktok_lightgcn_dim128_dns_norm060_tc_s${seed}" configs/tiktok_lightgcn.yaml "--run.seed=${seed}" \
      --eval.test_curve=true --model.embedding_dim=128 --train.negative_candidates=16 \
      --train.negative_candidate_epochs=5 --model.lightgcn.norm_power=0.6
done
finish
if [[ $DRY_RUN != 1 ]]; then
  dirs=()
  for group in tiktok_causal_tc tiktok_lightgcn_dim128_dns_norm060_tc; do
    for seed in $SEEDS; do dirs+=("$RUNS/${group}_s$seed"); done
  done
  "$PY" -m trainer.picked_epoch --group-seeds "${dirs[@]}"
fi
