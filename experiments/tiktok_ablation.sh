#!/usr/bin/env bash
# Ablations of the causal model on TikTok (docs/MODEL.md), seeds 0 1 2, each variant being
# configs/tiktok_causal.yaml with one module switched off:
#
#   runs/tiktok_causal_<variant>_s<seed>
#     full           nothing switched off
#     no_diffusion   --model.causal.diffusion.enabled=false        (confounder = plain fusion)
#     no_backdoor    --model.causal.backdoor.enabled=false         (no codebook adjustment)
#     flat_codebook  --model.causal.backdoor.hierarchical=false    (one level of codes)
#     no_frontdoor   --model.causal.frontdoor.enabled=false        (no mediator term)
#     no_topology    --model.causal.frontdoor.topology_reconstruction=false  (mediator on the full graph)
#
#   bash experiments/tiktok_ablation.sh
#   JOBS=2 VARIANTS="full no_backdoor" bash experiments/tiktok_ablation.sh
#
# `full` is the very run experiments/tiktok_seeds.sh trains as tiktok_causal_s<seed> (same config,
# same seed): when that one is finished, tiktok_causal_full_s<seed> is made a symbolic link to it
# instead of training it again (hours on a small machine). REUSE_FULL=0 trains it separately.
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh

REUSE_FULL=${REUSE_FULL:-1}
VARIANTS=${VARIANTS:-full no_diffusion no_backdoor flat_codebook no_frontdoor no_topology}

# override VARIANT: the config override that makes the variant (empty for full).
override() {
  case $1 in
    full)          echo "" ;;
    no_diffusion)  echo "--model.causal.diffusion.enabled=false" ;;
    no_backdoor)   echo "--model.causal.backdoor.enabled=false" ;;
    flat_codebook) echo "--model.causal.backdoor.hierarchical=false" ;;
    no_frontdoor)  echo "--model.causal.frontdoor.enabled=false" ;;
    no_topology)   echo "--model.causal.frontdoor.topology_reconstruction=false" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}

for variant in $VARIANTS; do    # fail on a typo before anything starts
  override "$variant" > /dev/null
done

for seed in $SEEDS; do
  for variant in $VARIANTS; do
    name="tiktok_causal_${variant}_s${seed}"
    if [[ $variant == full && $REUSE_FULL == 1 && ! -e "$RUNS/$name" ]] && finished "tiktok_causal_s${seed}"; then
      echo "link  $name -> tiktok_causal_s${seed} (the same run, trained by experiments/tiktok_seeds.sh)"
      [[ $DRY_RUN == 1 ]] || ln -s "tiktok_causal_s${seed}" "$RUNS/$name"
      continue
    fi
    flag=$(override "$variant")
    train "$name" configs/tiktok_causal.yaml "--run.seed=${seed}" ${flag:+"$flag"}
  done
done
finish
