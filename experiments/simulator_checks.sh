#!/usr/bin/env bash
# The causal checks on the simulator (issue 3, part 4): a simulator dataset with planted noise
# edges and confounding, three models over seeds 0 1 2, the checks of the full model against the
# planted truth, and a table in docs/RESULTS.md (section simulator-checks):
#
#   data/synthetic-checks                 python -m data_loaders.prepare --from synthetic (SIM_ARGS below)
#   runs/sim_<variant>_s<seed>            CONFIG with the variant's overrides (variant_args below):
#                                         full, noadjust, exposure_only, no_exposure, lightgcn, fd_id
#                                         (optional: gamma05, gamma2, item_bias, no_backdoor, no_frontdoor)
#   runs/sim_full_s<seed>/causal_checks.json   python -m trainer.causal_checks (NMI of the codes with the
#                                         planted confounder, pruning vs the planted noise edges)
#   runs/simulator_checks.json            python -m trainer.sim_report: per-variant figures and verdicts
#
#   bash experiments/simulator_checks.sh                    # everything, one run at a time
#   STEPS=prepare bash experiments/simulator_checks.sh      # only the dataset (~5 s)
#   CONFIG=configs/my_causal.yaml JOBS=2 bash experiments/simulator_checks.sh
#   DRY_RUN=1 bash experiments/simulator_checks.sh          # print what would run
#
# The checks (trainer/sim_report.py): (a) unbiased_test R@20 of sim_full >= 1.10 x sim_exposure_only (the
# same model, exposure term included, with back-door and front-door off) and > sim_lightgcn (means over seeds); (b) NMI of the coarse codes with the true confounder >= 0.5;
# (c) pruning precision above chance (= the noise fraction of the training edges).
#
# Environment (and RUNS, JOBS, SEEDS, LOGS, EXTRA_ARGS, PY, DRY_RUN of experiments/lib.sh):
#   STEPS    any of "prepare train checks" (default: all three)
#   DATA     dataset directory (default data/synthetic-checks); made once, kept if its manifest exists
#   SIM_ARGS simulator flags (docs/SIMULATOR.md; default below)
#   CONFIG   the causal model's config (default configs/synthetic_causal.yaml); every variant uses it
#   BATCH    --train.batch_size of every run (default 4096: an epoch of the causal model is ~9 full-graph
#            steps at this size; about 1.5 minutes per causal run with JOBS=2 on this machine's 2 cores)
#   SELECT   --eval.select_split of every run (default unbiased_valid: every variant, LightGCN too, picks
#            its epoch on the simulator's uniform-exposure validation split; `valid` reproduces the
#            tables made before that split existed)
#   DOC      the document to update (default docs/RESULTS.md)
#
# Dataset: 3,000 users x 1,500 items (8 categories x 4 styles), 20% of train edges planted noise,
# exposure biased by popularity (Zipf a = 1) and a 4x promotion of 2 of the 8 categories, style
# taste sharpened (confounder weight 1.5), 10 unbiased_test and 10 unbiased_valid items per user;
# about 35k train, 4.1k valid, 4.1k test, 29k unbiased_test and 30k unbiased_valid rows (~5 s).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh

STEPS=${STEPS:-prepare train checks}
DATA=${DATA:-data/synthetic-checks}
SIM_ARGS=${SIM_ARGS:---users 3000 --items 1500 --num-categories 8 --styles-per-category 4 --noise-rate 0.2 --popularity-exponent 1.0 --promoted-fraction 0.25 --promotion-boost 4 --confounder-weight 1.5 --unbiased-per-user 10 --unbiased-valid-per-user 10 --seed 0}
CONFIG=${CONFIG:-configs/synthetic_causal.yaml}
BATCH=${BATCH:-4096}
SELECT=${SELECT:-unbiased_valid}
DOC=${DOC:-docs/RESULTS.md}
read -r -a SIM <<< "$SIM_ARGS"
COMMON=("--data.url=$DATA" "--train.batch_size=$BATCH" "--eval.select_split=$SELECT")

# The variants. `noadjust` switches off every adjustment (back-door, front-door, exposure term);
# `exposure_only` and `no_exposure` split the full model's gain between the exposure term and the
# back-door + front-door; `gamma05` / `gamma2` set the exposure weight to 0.5 / 2 (the config's is
# 2.0, chosen on unbiased_valid among 0.5, 1 and 2: docs/MODEL.md §4b).
variant_args() {
  case $1 in
    full)          echo "" ;;
    noadjust)      echo "--model.causal.backdoor.enabled=false --model.causal.frontdoor.enabled=false --model.causal.exposure.mode=none" ;;
    exposure_only) echo "--model.causal.backdoor.enabled=false --model.causal.frontdoor.enabled=false" ;;
    no_exposure)   echo "--model.causal.exposure.mode=none" ;;
    gamma05)       echo "--model.causal.exposure.gamma=0.5" ;;
    gamma2)        echo "--model.causal.exposure.gamma=2.0" ;;
    item_bias)     echo "--model.causal.exposure.mode=item_bias" ;;   # not in the default VARIANTS
    no_backdoor)   echo "--model.causal.backdoor.enabled=false" ;;     # not in the default VARIANTS: which
    no_frontdoor)  echo "--model.causal.frontdoor.enabled=false" ;;    # adjustment moves unbiased_test
    fd_id)         echo "--model.causal.frontdoor.mediator_items=id" ;;   # the design's ID-row mediator (config: content)
    lightgcn)      echo "--model.name=lightgcn" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
read -r -a VARIANTS <<< "${VARIANTS:-full noadjust exposure_only no_exposure lightgcn fd_id}"

# run CMD...: run (or with DRY_RUN=1 print) a command.
run() {
  if [[ $DRY_RUN == 1 ]]; then echo "$*"; else "$@"; fi
}

if [[ " $STEPS " == *" prepare "* ]]; then
  if [[ -f $DATA/manifest.json ]] && [[ $SELECT == unbiased_valid ]] \
      && ! grep -Eq '"unbiased_valid": [1-9]' "$DATA/manifest.json"; then
    # Made before the split existed. The new one keeps every other split row for row (the simulator
    # draws unbiased_valid last), so remaking it changes nothing else.
    echo "error: $DATA has no unbiased_valid split; remove it and run STEPS=prepare again" >&2
    exit 2
  elif [[ -f $DATA/manifest.json ]]; then
    echo "skip  dataset ($DATA/manifest.json exists)"
  else
    run "$PY" -m data_loaders.prepare --from synthetic "${SIM[@]}" --to "$DATA"
  fi
fi

if [[ " $STEPS " == *" train "* ]]; then
  for seed in $SEEDS; do        # seed-major: a partial sweep already has every variant at seed 0
    for variant in "${VARIANTS[@]}"; do
      read -r -a flags <<< "$(variant_args "$variant")"
      train "sim_${variant}_s${seed}" "$CONFIG" "--run.seed=${seed}" "${COMMON[@]}" ${flags[@]+"${flags[@]}"}
    done
  done
  finish
fi

if [[ " $STEPS " == *" checks "* ]]; then
  all=()
  for variant in "${VARIANTS[@]}"; do
    for seed in $SEEDS; do all+=("$RUNS/sim_${variant}_s${seed}"); done
  done
  missing=()
  for dir in "${all[@]}"; do [[ -f $dir/metrics.json ]] || missing+=("$dir"); done
  if (( ${#missing[@]} )) && [[ $DRY_RUN != 1 ]]; then
    echo "error: runs not finished: ${missing[*]} (run with STEPS=train first)" >&2
    exit 1
  fi
  for seed in $SEEDS; do
    run "$PY" -m trainer.causal_checks --run "$RUNS/sim_full_s${seed}" --json "$RUNS/sim_full_s${seed}/causal_checks.json"
  done
  also=()   # the parts of the full model's gain, when those variants were trained
  for variant in noadjust no_exposure no_backdoor no_frontdoor fd_id; do
    [[ " ${VARIANTS[*]} " == *" $variant "* ]] && also+=("sim_$variant")
  done
  # (a) compares the full model with *the same model* with back-door and front-door off: the
  # exposure term (not part of either adjustment) stays on, i.e. sim_exposure_only.
  run "$PY" -m trainer.sim_report "${all[@]}" --full sim_full --ablated sim_exposure_only --baseline sim_lightgcn \
      ${also[@]+--also "${also[@]}"} \
      --json "$RUNS/simulator_checks.json" --markdown-section simulator-checks --write "$DOC" \
      --heading "Causal checks on the simulator (issue 3)"
fi
