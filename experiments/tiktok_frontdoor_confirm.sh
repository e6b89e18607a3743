#!/usr/bin/env bash
# The front-door on TikTok, on fresh seeds (docs/RESULTS.md "TikTok: the front-door on fresh seeds";
# each rule was committed before its runs). The seeds 0-2 ablation put the model without the
# front-door (and without topology reconstruction) above the full model on valid, within one seed's
# spread; these runs ask the same question on seeds 7-9, against the configuration's own runs.
#
#   runs/tiktok_causal_s<seed>              configs/tiktok_causal.yaml
#   runs/tiktok_causal_no_frontdoor_s<seed> --model.causal.frontdoor.enabled=false
#   runs/tiktok_causal_no_topology_s<seed>  --model.causal.frontdoor.topology_reconstruction=false
#   second round (VARIANTS=no_cross):
#   runs/tiktok_causal_no_cross_s<seed>     --model.causal.frontdoor.cross_sample=false (h^fd = m: no
#                                           attention over the moving codebook)
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_frontdoor_confirm.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "7 8 9"),
# LOGS, EXTRA_ARGS. The summary printed at the end is `python -m trainer.report --group-seeds`.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-7 8 9}
source experiments/lib.sh
VARIANTS=${VARIANTS:-no_frontdoor no_topology}

# override VARIANT: the config override that makes the variant.
override() {
  case $1 in
    no_frontdoor) echo "--model.causal.frontdoor.enabled=false" ;;
    no_topology)  echo "--model.causal.frontdoor.topology_reconstruction=false" ;;
    no_cross)     echo "--model.causal.frontdoor.cross_sample=false" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
