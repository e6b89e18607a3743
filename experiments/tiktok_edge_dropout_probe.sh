#!/usr/bin/env bash
# Edge dropout in the causal model's ID backbone on TikTok (docs/RESULTS.md "TikTok: edge dropout
# in the backbone"): each epoch, training propagates on a random share of the training edges
# (model.causal.backbone.edge_keep); evaluation and the per-epoch refreshes use the full graph.
#
#   runs/tiktok_causal_s<seed>          configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_drop10_s<seed>   10% of the edges dropped per epoch (edge_keep 0.9)
#   runs/tiktok_causal_drop30_s<seed>   30% dropped (edge_keep 0.7)
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_edge_dropout_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "0"), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh
VARIANTS=${VARIANTS-drop10 drop30}

override() {
  case $1 in
    drop10) echo "--model.causal.backbone.edge_keep=0.9" ;;
    drop30) echo "--model.causal.backbone.edge_keep=0.7" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
