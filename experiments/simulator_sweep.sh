#!/usr/bin/env bash
# A Ray Tune sweep of the causal model on the simulator's checks dataset, and its confirmation on
# fresh seeds (docs/RESULTS.md, "Simulator sweep"). Only a validation split chooses: by default
# unbiased_valid (SELECT), the simulator's uniform-exposure validation split; unbiased_test, the
# split causal check (a) reads, is recorded by every run but never used to decide.
#
#   runs/$SWEEP/                     tune/main.py over $SPACE (seed 0)
#   runs/${PREFIX}_current_s<seed>   configs/synthetic_causal.yaml   } on SEEDS (3 4 5), with the checks'
#   runs/${PREFIX}_swept_s<seed>     the sweep's best_config.yaml    } dataset, batch and SELECT
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" bash experiments/simulator_sweep.sh
#   STEPS=confirm ... bash experiments/simulator_sweep.sh        # only the confirmation runs
#   SPACE=tune/spaces/causal_simulator.yaml SELECT=valid SWEEP=sim_causal_sweep PREFIX=sim ...
#                                    # the first sweep (observational valid), as RESULTS records it
#
# The rule (fixed before the runs): the swept values replace configs/synthetic_causal.yaml's only if
# their mean best SELECT R@20 over SEEDS is strictly higher than the current config's over the same
# seeds, both trained at the same commit with the same command. The summary printed at the end is
# `python -m trainer.report --group-seeds` over both sides (its "selected by" column).
#
# Environment (and RUNS, JOBS, LOGS, EXTRA_ARGS, PY, DRY_RUN of experiments/lib.sh):
#   STEPS  any of "sweep confirm" (default both)
#   SEEDS  confirmation seeds (default "3 4 5": fresh, the sweep used seed 0, the checks use 0 1 2)
#   DATA   the checks dataset (default data/synthetic-checks; made by experiments/simulator_checks.sh)
#   BATCH  --train.batch_size, as experiments/simulator_checks.sh (default 4096)
#   SPACE  the search space (default tune/spaces/causal_simulator_unbiased.yaml, ranked by unbiased_valid R@20)
#   SELECT --eval.select_split of the confirmation runs (default unbiased_valid; must match SPACE's metric)
#   SWEEP  the sweep's run name (default sim_causal_sweep_uv)
#   PREFIX the confirmation runs' name prefix (default sim_uv)
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-3 4 5}
source experiments/lib.sh

STEPS=${STEPS:-sweep confirm}
DATA=${DATA:-data/synthetic-checks}
BATCH=${BATCH:-4096}
SPACE=${SPACE:-tune/spaces/causal_simulator_unbiased.yaml}
SELECT=${SELECT:-unbiased_valid}
SWEEP=${SWEEP:-sim_causal_sweep_uv}
PREFIX=${PREFIX:-sim_uv}

if [[ ! -f $DATA/manifest.json ]]; then
  echo "error: no dataset at $DATA (STEPS=prepare bash experiments/simulator_checks.sh makes it)" >&2
  exit 2
fi

if [[ " $STEPS " == *" sweep "* ]]; then
  cmd=("$PY" tune/main.py --config configs/synthetic_causal.yaml --space "$SPACE"
       "--data.url=$DATA" "--train.batch_size=$BATCH" "--run.name=$SWEEP" "--run.storage_path=$RUNS"
       ${EXTRA[@]+"${EXTRA[@]}"})
  if [[ $DRY_RUN == 1 ]]; then echo "${cmd[*]}"; else "${cmd[@]}"; fi
fi

if [[ " $STEPS " == *" confirm "* ]]; then
  best=$RUNS/$SWEEP/best_config.yaml
  if [[ ! -f $best && $DRY_RUN != 1 ]]; then
    echo "error: no sweep result at $best (run STEPS=sweep first)" >&2
    exit 2
  fi
  for seed in $SEEDS; do
    train "${PREFIX}_current_s${seed}" configs/synthetic_causal.yaml "--run.seed=${seed}" "--data.url=$DATA" \
        "--train.batch_size=$BATCH" "--eval.select_split=$SELECT"
    train "${PREFIX}_swept_s${seed}" "$best" "--run.seed=${seed}" "--data.url=$DATA" "--train.batch_size=$BATCH" \
        "--eval.select_split=$SELECT"
  done
  finish
  report_groups "${PREFIX}_current" "${PREFIX}_swept"
fi
