#!/usr/bin/env bash
# Keeping TikTok's coarse codebook alive (docs/RESULTS.md "TikTok: the coarse codebook without
# restarts"): without dead-code restarts every item sits on one coarse code for the whole run, so
# the back-door adjusts over a constant. Restarts only in the first epochs (backdoor.restart_epochs)
# may spread the codes while the encoder moves fast and keep the late curve steady.
#
#   runs/tiktok_causal_s<seed>                    configs/tiktok_causal.yaml (skipped when present)
#   runs/tiktok_causal_restart20_s<seed>          code EMA 0.95, restarts (threshold 0.1) in epochs 1-20
#   runs/tiktok_causal_restart40_s<seed>          ... in epochs 1-40
#   runs/tiktok_causal_restart30_slow_s<seed>     code EMA 0.99, restarts (threshold 0.5) in epochs 1-30
#
#   JOBS=2 EXTRA_ARGS="--scaling.threads_per_worker=1 --logging.progress=false" \
#       bash experiments/tiktok_codebook_probe.sh
#
# Finished runs are skipped; see experiments/lib.sh for RUNS, JOBS, SEEDS (default here "0"), LOGS, EXTRA_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-0}
source experiments/lib.sh
VARIANTS=${VARIANTS:-restart20 restart40 restart30_slow}

override() {
  local b="--model.causal.backdoor"
  case $1 in
    restart20)      echo "$b.ema_decay=0.95 $b.dead_code_threshold=0.1 $b.restart_epochs=20" ;;
    restart40)      echo "$b.ema_decay=0.95 $b.dead_code_threshold=0.1 $b.restart_epochs=40" ;;
    restart30_slow) echo "$b.ema_decay=0.99 $b.dead_code_threshold=0.5 $b.restart_epochs=30" ;;
    *) echo "error: unknown variant '$1'" >&2; return 1 ;;
  esac
}
train_variants configs/tiktok_causal.yaml tiktok_causal override
