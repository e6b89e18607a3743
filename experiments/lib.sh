# Shared by experiments/tiktok_*.sh (sourced, not run): settings from the environment and a small
# job pool that trains runs JOBS at a time, skipping the finished ones.
#
#   RUNS        where run directories go: passed as --run.storage_path (default: runs, as in the configs)
#   JOBS        runs trained at once (default 1). Each trainer/main.py starts its own local Ray
#               over all cores (or joins a running `ray start` / cluster/local.py cluster), so on a
#               small machine more than 1 mostly splits the same cores.
#   SEEDS       default "0 1 2"
#   LOGS        one log per run, <LOGS>/<run name>.log (default: logs/experiments)
#   EXTRA_ARGS  more --section.key=value overrides for every run, e.g. "--scaling.num_workers=2"
#   DRY_RUN=1   print the commands instead of running them
#   PY          the Python to use (default: .venv/bin/python)

PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs}
JOBS=${JOBS:-1}
SEEDS=${SEEDS:-0 1 2}
LOGS=${LOGS:-logs/experiments}
DRY_RUN=${DRY_RUN:-0}
read -r -a EXTRA <<< "${EXTRA_ARGS:-}"

if ! [[ $JOBS =~ ^[1-9][0-9]*$ ]]; then
  echo "error: JOBS must be a positive integer, got '$JOBS'" >&2
  exit 2
fi

# Names of the runs that failed, one per line (written by the background jobs).
FAILED_LIST=$(mktemp)
trap 'rm -f "$FAILED_LIST"' EXIT

# finished NAME: true when the run has written its results (trainer/main.py writes metrics.json
# at the very end). A run directory without it is an interrupted run: trainer/main.py resumes it
# from its newest complete checkpoint when started again under the same name.
finished() {
  [[ -f "$RUNS/$1/metrics.json" ]]
}

# train NAME CONFIG [OVERRIDE ...]: train run NAME from CONFIG in the background, waiting first
# until fewer than JOBS runs are going. Skips a finished run.
train() {
  local name=$1 config=$2
  shift 2
  if finished "$name"; then
    echo "skip  $name ($RUNS/$name/metrics.json exists)"
    return 0
  fi
  local cmd=("$PY" trainer/main.py --config "$config" "--run.name=$name" "--run.storage_path=$RUNS"
             "$@" ${EXTRA[@]+"${EXTRA[@]}"})
  if [[ $DRY_RUN == 1 ]]; then
    echo "${cmd[*]}"
    return 0
  fi
  while (( $(jobs -rp | wc -l) >= JOBS )); do
    wait -n || true  # a failure is recorded by the job itself
  done
  mkdir -p "$LOGS"
  echo "start $name (log: $LOGS/$name.log)"
  (
    if "${cmd[@]}" > "$LOGS/$name.log" 2>&1; then
      echo "done  $name"
    else
      echo "FAIL  $name (exit $?; see $LOGS/$name.log)"
      echo "$name" >> "$FAILED_LIST"
    fi
  ) &
}

# finish: wait for every run; exit status 1 (naming them) if any failed.
finish() {
  wait
  [[ $DRY_RUN == 1 ]] && return 0
  if [[ -s $FAILED_LIST ]]; then
    echo "failed runs: $(tr '\n' ' ' < "$FAILED_LIST")" >&2
    return 1
  fi
  echo "all runs finished"
}

# report_groups GROUP...: the mean ± std table (`trainer.report --group-seeds`) of the runs
# <RUNS>/<GROUP>_s<seed> for every GROUP and every seed of SEEDS; nothing with DRY_RUN=1.
report_groups() {
  [[ $DRY_RUN == 1 ]] && return 0
  local dirs=() group seed
  for group in "$@"; do
    for seed in $SEEDS; do dirs+=("$RUNS/${group}_s$seed"); done
  done
  "$PY" -m trainer.report --group-seeds "${dirs[@]}"
}

# train_variants CONFIG BASE OVERRIDES [FIXED ...]: the probe/confirmation pattern. OVERRIDES is a
# function that prints a variant's overrides (or fails on an unknown name); every variant of VARIANTS
# is checked with it first, so a typo fails before anything starts. Then, for every seed of SEEDS,
# trains the reference <BASE>_s<seed> from CONFIG and <BASE>_<variant>_s<seed> with FIXED and the
# variant's overrides, waits for all of them and prints their table (reference first).
train_variants() {
  local config=$1 base=$2 overrides=$3
  shift 3
  local variant seed groups=("$base")
  local -a extra
  for variant in $VARIANTS; do "$overrides" "$variant" > /dev/null; done
  for seed in $SEEDS; do
    train "${base}_s${seed}" "$config" "--run.seed=${seed}"
    for variant in $VARIANTS; do
      read -r -a extra <<< "$("$overrides" "$variant")"
      train "${base}_${variant}_s${seed}" "$config" "--run.seed=${seed}" "$@" ${extra[@]+"${extra[@]}"}
    done
  done
  finish
  for variant in $VARIANTS; do groups+=("${base}_${variant}"); done
  report_groups "${groups[@]}"
}

# sim_args: check that the simulator checks dataset DATA (default data/synthetic-checks, made by
# `STEPS=prepare bash experiments/simulator_checks.sh`) exists, exit 2 naming it if not, and set
# SIM_COMMON to the overrides every simulator confirmation run shares: that dataset, BATCH (default
# 4096, as experiments/simulator_checks.sh) and the epoch chosen on unbiased_valid.
sim_args() {
  DATA=${DATA:-data/synthetic-checks}
  BATCH=${BATCH:-4096}
  if [[ ! -f $DATA/manifest.json ]]; then
    echo "error: no dataset at $DATA (STEPS=prepare bash experiments/simulator_checks.sh makes it)" >&2
    exit 2
  fi
  SIM_COMMON=("--data.url=$DATA" "--train.batch_size=$BATCH" "--eval.select_split=unbiased_valid")
}
