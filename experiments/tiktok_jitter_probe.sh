#!/usr/bin/env bash
# Where the causal model's jumpy valid curve comes from (docs/RESULTS.md "TikTok: what makes the
# valid curve jump"): the front-door's cross-sample term attends over the back-door's coarse codes
# and their prior, and all three of these change between evaluations. Diagnostic, seed 0, valid
# only; each variant makes one of them move more slowly:
#
#   runs/tiktok_causal_s<seed>             configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_no_restart_s<seed>  --model.causal.backdoor.dead_code_threshold=0 (no code restarts)
#   runs/tiktok_causal_slow_codes_s<seed>  --model.causal.backdoor.ema_decay=0.99 (codes' EMA, 0.95 by default)
#   runs/tiktok_causal_ema_prior_s<seed>   --model.causal.backdoor.prior=ema (P(c) from the EMA counts, updated
#                                          every step, instead of a recount of all items once per epoch)
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_jitter_probe.sh
#   .venv/bin/python -m trainer.curve_jitter runs/tiktok_causal_s0 runs/tiktok_causal_{no_restart,slow_codes,ema_prior}_s0
#
# The confirmation of no code restarts on fresh seeds (docs/RESULTS.md "TikTok: no code restarts on
# fresh seeds"): SEEDS="7 8 9" VARIANTS=no_restart, same JOBS and EXTRA_ARGS.
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "0"), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh
VARIANTS=${VARIANTS:-no_restart slow_codes ema_prior}

override() {
  case $1 in
    no_restart) echo "--model.causal.backdoor.dead_code_threshold=0" ;;
    slow_codes) echo "--model.causal.backdoor.ema_decay=0.99" ;;
    ema_prior)  echo "--model.causal.backdoor.prior=ema" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
