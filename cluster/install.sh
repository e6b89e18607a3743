#!/usr/bin/env bash
# Build .venv from nothing, or do nothing when it is already current.
# Used by `make`, .ci/run and the cluster launcher's setup_commands (ray_config.yaml).
#   CIMREC_GPU=1 cluster/install.sh   -> the real CUDA fbgemm-gpu instead of the CPU shim
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CIMREC_VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
STAMP="$VENV/.cimrec-install-stamp"
# The stamp is the hash of everything that decides what gets installed.
want=$(cat pyproject.toml cluster/install.sh cluster/fbgemm_gpu_shim/pyproject.toml | sha256sum | cut -c1-16)-gpu${CIMREC_GPU:-0}
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
echo "[install] building $VENV (this takes about 2 minutes the first time)"
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
# pip prints a warning per package for the empty local indexes configured on some machines: drop those.
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
# 1. torch first, exactly pinned (the CPU wheel on disk here; see pyproject.toml).
if [[ "${CIMREC_GPU:-0}" == "1" ]]; then
  pip install -q torch==2.13.0 fbgemm-gpu==1.8.0 setuptools wheel
else
  pip install -q torch==2.13.0 fbgemm-gpu-cpu==1.8.0 setuptools wheel numpy
  pip install -q ./cluster/fbgemm_gpu_shim
fi
# 2. deepspeed is an sdist whose setup.py imports torch: build it against the torch
#    just installed instead of letting pip fetch another torch into a build env.
pip install -q --no-build-isolation deepspeed==0.19.8
# 3. the project itself, editable, with test tools.
pip install -q -e ".[dev]"
pip check
echo "$want" > "$STAMP"
echo "[install] done"
