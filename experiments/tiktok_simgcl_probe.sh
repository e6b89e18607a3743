#!/usr/bin/env bash
# SimGCL's noisy-view contrast on the causal model's ID rows (docs/RESULTS.md "TikTok: a SimGCL
# term on the ID rows"): model.causal.id_contrast.loss_weight > 0 adds InfoNCE between two
# noise-perturbed propagations of the ID rows (eps 0.1, temperature 0.2) for the batch's nodes.
#
#   runs/tiktok_causal_s<seed>          configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_sgl01_s<seed>    SimGCL weight 0.1
#   runs/tiktok_causal_sgl05_s<seed>    SimGCL weight 0.5
#   second round (VARIANTS="sgl002 sgl002_eps001"):
#   runs/tiktok_causal_sgl002_s<seed>         weight 0.02
#   runs/tiktok_causal_sgl002_eps001_s<seed>  weight 0.02, eps 0.01
#   check on the ID backbone alone (VARIANTS="idonly idonly_sgl01"): every causal module off, the
#   content out of the score, so the model is LightGCN (+ the SimGCL term)
#   runs/tiktok_causal_idonly_s<seed>         no SimGCL term
#   runs/tiktok_causal_idonly_sgl01_s<seed>   SimGCL weight 0.1
#   runs/tiktok_causal_idonly_sgl01_eps0_s<seed>  weight 0.1 without noise (two identical views)
#   ... and at SimGCL's own batch and rate (VARIANTS="idonly_b2048 idonly_sgl05_b2048"): batch 2048,
#   learning rate 1e-3, its Yelp2018 weight 0.5 and all 2,048 nodes per InfoNCE
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_simgcl_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "0"), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh
VARIANTS=${VARIANTS-sgl01 sgl05}

IDONLY="--model.causal.diffusion.enabled=false --model.causal.backdoor.enabled=false \
--model.causal.frontdoor.enabled=false --model.causal.contrast.enabled=false --model.causal.content_in_score=false"

SIMGCL_RUN="--train.batch_size=2048 --train.learning_rate=1e-3"

override() {
  case $1 in
    idonly) echo "$IDONLY" ;;
    idonly_sgl01) echo "$IDONLY --model.causal.id_contrast.loss_weight=0.1" ;;
    idonly_sgl01_eps0) echo "$IDONLY --model.causal.id_contrast.loss_weight=0.1 --model.causal.id_contrast.eps=0" ;;
    idonly_b2048) echo "$IDONLY $SIMGCL_RUN" ;;
    idonly_sgl05_b2048) echo "$IDONLY $SIMGCL_RUN --model.causal.id_contrast.loss_weight=0.5 \
--model.causal.id_contrast.max_nodes=2048" ;;
    sgl01) echo "--model.causal.id_contrast.loss_weight=0.1" ;;
    sgl05) echo "--model.causal.id_contrast.loss_weight=0.5" ;;
    sgl002) echo "--model.causal.id_contrast.loss_weight=0.02" ;;
    sgl002_eps001) echo "--model.causal.id_contrast.loss_weight=0.02 --model.causal.id_contrast.eps=0.01" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
