#!/usr/bin/env bash
# Regenerate the TikTok sections of docs/RESULTS.md from the run directories of
# experiments/tiktok_seeds.sh and experiments/tiktok_ablation.sh:
#
#   tiktok-seeds-runs      every run, one row each (python -m trainer.report)
#   tiktok-seeds           mean ± std over seeds per model, with the published figures (--group-seeds)
#   tiktok-paired          causal vs each baseline: paired t-test and bootstrap over users (trainer.compare)
#   tiktok-ablation        mean ± std over seeds per ablation variant
#   tiktok-ablation-paired full causal model vs each variant (trainer.compare)
#
#   bash experiments/tiktok_tables.sh
#   RUNS=/data/runs DOC=/tmp/RESULTS.md bash experiments/tiktok_tables.sh
#
# A section is (re)written between its <!-- begin NAME --> / <!-- end NAME --> markers, which are
# appended under a heading when the document lacks them; the rest of the document is untouched.
# A section some of whose runs are not finished is skipped with a warning (exit status 1 at the end).
# The paired tests rebuild each run's best checkpoint once and cache per-user values in the run
# (per_user_test.npz); their JSON goes to $RUNS/tiktok_paired.json, $RUNS/tiktok_ablation_paired.json.
# Environment: RUNS, SEEDS, PY, DRY_RUN as in experiments/lib.sh; DOC (default docs/RESULTS.md);
# BASELINES (below); METRICS for the paired tests (default "recall@20 ndcg@20").
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/lib.sh

DOC=${DOC:-docs/RESULTS.md}
METRICS=${METRICS:-recall@20 ndcg@20}
read -r -a METRIC_ARGS <<< "$METRICS"
# BASELINES: the baselines' run names without tiktok_/_s<seed>, e.g. "lightgcn_dim128 vbpr freedom" for a
# baseline whose wider setting won on valid (experiments/tiktok_baseline_dim.sh).
read -r -a BASELINES <<< "${BASELINES:-lightgcn vbpr freedom}"
ABLATIONS=(no_diffusion no_backdoor flat_codebook no_frontdoor no_topology)
skipped=0

# seeds GROUP: the run directories GROUP_s<seed> for every seed, one per line.
ABLATION_SEEDS=${ABLATION_SEEDS:-$SEEDS}   # the ablation tables may use fewer seeds than the main one

seeds() {   # seeds NAME [SEED_LIST]
  local seed
  for seed in ${2:-$SEEDS}; do echo "$RUNS/${1}_s${seed}"; done
}

# ready SECTION DIR...: true when every run directory is finished, else warn and count a skip.
ready() {
  local section=$1 dir missing=()
  shift
  for dir in "$@"; do
    [[ -f "$dir/metrics.json" ]] || missing+=("$dir")
  done
  if (( ${#missing[@]} )); then
    echo "skip section $section: not finished: ${missing[*]}" >&2
    skipped=$((skipped + 1))
    return 1
  fi
}

# ensure_section NAME HEADING: append "## HEADING" and empty markers to DOC if NAME is not there yet.
ensure_section() {
  grep -qF "<!-- begin $1 -->" "$DOC" 2>/dev/null && return 0
  [[ $DRY_RUN == 1 ]] && { echo "would add section $1 to $DOC"; return 0; }
  printf '\n## %s\n\n<!-- begin %s -->\n<!-- end %s -->\n' "$2" "$1" "$1" >> "$DOC"
}

# run CMD...: run (or with DRY_RUN=1 print) a command.
run() {
  if [[ $DRY_RUN == 1 ]]; then echo "$*"; else "$@"; fi
}

# The four models over seeds: every run, then mean ± std per model.
mapfile -t MAIN_RUNS < <(for m in "${BASELINES[@]}" causal; do seeds "tiktok_$m"; done)
if ready tiktok-seeds "${MAIN_RUNS[@]}"; then
  ensure_section tiktok-seeds-runs "TikTok over seeds: every run"
  run "$PY" -m trainer.report "${MAIN_RUNS[@]}" --published docs/published.yaml \
      --markdown-section tiktok-seeds-runs --write "$DOC"
  ensure_section tiktok-seeds "TikTok over seeds: mean ± std per model"
  run "$PY" -m trainer.report --group-seeds "${MAIN_RUNS[@]}" --published docs/published.yaml \
      --markdown-section tiktok-seeds --write "$DOC"

  # Causal vs each baseline, paired over test users (each user's metric averaged over seeds).
  b_args=()
  for m in "${BASELINES[@]}"; do
    mapfile -t group < <(seeds "tiktok_$m")
    b_args+=(--b "${group[@]}")
  done
  mapfile -t causal < <(seeds tiktok_causal)
  ensure_section tiktok-paired "TikTok: is the causal model better than each baseline? (paired tests)"
  run "$PY" -m trainer.compare --a "${causal[@]}" "${b_args[@]}" --metric "${METRIC_ARGS[@]}" \
      --json "$RUNS/tiktok_paired.json" --markdown-section tiktok-paired --write "$DOC"
fi

# The ablations: mean ± std per variant, then full vs each variant.
mapfile -t ABL_RUNS < <(for v in full "${ABLATIONS[@]}"; do seeds "tiktok_causal_$v" "$ABLATION_SEEDS"; done)
if ready tiktok-ablation "${ABL_RUNS[@]}"; then
  ensure_section tiktok-ablation "TikTok ablations of the causal model (mean ± std over seeds)"
  run "$PY" -m trainer.report --group-seeds "${ABL_RUNS[@]}" --markdown-section tiktok-ablation --write "$DOC"

  b_args=()
  for v in "${ABLATIONS[@]}"; do
    mapfile -t group < <(seeds "tiktok_causal_$v" "$ABLATION_SEEDS")
    b_args+=(--b "${group[@]}")
  done
  mapfile -t full < <(seeds tiktok_causal_full "$ABLATION_SEEDS")
  ensure_section tiktok-ablation-paired "TikTok ablations: full model vs each variant (paired tests)"
  run "$PY" -m trainer.compare --a "${full[@]}" "${b_args[@]}" --metric "${METRIC_ARGS[@]}" \
      --json "$RUNS/tiktok_ablation_paired.json" --markdown-section tiktok-ablation-paired --write "$DOC"
fi

if (( skipped )); then
  echo "$skipped section(s) skipped: train the missing runs (experiments/tiktok_seeds.sh, tiktok_ablation.sh)" >&2
  exit 1
fi
echo "updated $DOC"
