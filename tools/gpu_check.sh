#!/usr/bin/env bash
# GPU figures in one short run (<= 12 min on one H200-class GPU): SimCLR ResNet-50 throughput
# with and without pruning, kornia augmentation throughput, faiss-gpu vs torch kNN, and the
# ratio against the lightly-style reference loop. Uses .venv when present.
# Usage: bash tools/gpu_check.sh [--reduced]
set -euo pipefail
cd "$(dirname "$0")/.."
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
exec timeout 720 "$python" tools/gpu_check.py "$@"
