#!/usr/bin/env bash
# Validate a GPU machine for the bmip grid in one unattended command (about 5-8 minutes on one GPU):
# versions and GPUs, bf16 vs fp32 logits, `bmip benchmark` per method in bf16 and fp32, the reduced
# workflow end to end on the GPU, and the throughput of 1, 2, 4, 8 concurrent jobs on one GPU.
# Writes results/gpu-check/gpu-check.json and gpu-check.md (partial results after every part).
#
#   bash scripts/gpu-check.sh                 # full check, within a 450 s budget
#   bash scripts/gpu-check.sh --quick         # shorter timings, within 300 s
#   bash scripts/gpu-check.sh --help          # every option (parts, budget, model, levels, ...)
#
# Python: $BMIP_PYTHON if set, else the active virtual environment's, else .venv/bin/python, else
# python3. On a machine without internet whose Python already has torch (a GPU node's image),
# `--wheels DIR` first installs every wheel in DIR (the packages that Python lacks, downloaded
# elsewhere with `pip download --no-deps`) into a throw-away folder put on PYTHONPATH.
# Exit status: 0 passed; 1 a part failed, timed out or was skipped; 2 no usable GPU or no torch.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${BMIP_PYTHON:-}"
if [[ -z "$python" && -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
    python="$VIRTUAL_ENV/bin/python"
fi
if [[ -z "$python" && -x "$repo/.venv/bin/python" ]]; then
    python="$repo/.venv/bin/python"
fi
python="${python:-$(command -v python3 || true)}"
if [[ -z "$python" ]]; then
    echo "gpu-check: no Python found; run bash scripts/setup.sh first" >&2
    exit 2
fi
args=()
extra_path=""
while [[ $# -gt 0 ]]; do
    if [[ "$1" == "--wheels" ]]; then
        wheels="$(cd "${2:?--wheels needs a folder}" && pwd)"
        shift 2
        site="${TMPDIR:-/tmp}/bmip-gpu-check-site"
        if ! "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" "$wheels"/*.whl; then
            echo "gpu-check: could not install the wheels in $wheels (see pip's message above)" >&2
            exit 2
        fi
        extra_path="$site"
    else
        args+=("$1")
        shift
    fi
done
if ! "$python" -c "import torch" 2>/dev/null; then
    echo "gpu-check: $python has no torch; run bash scripts/setup.sh first (or set BMIP_PYTHON)" >&2
    exit 2
fi
export PYTHONPATH="$repo${extra_path:+:$extra_path}${PYTHONPATH:+:$PYTHONPATH}"
cd "$repo"
exec "$python" scripts/gpu_check.py "${args[@]+"${args[@]}"}"
