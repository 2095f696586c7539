#!/usr/bin/env bash
# The paired study on one GPU (<= 9 min on an H200-class GPU): Fashion-MNIST 60k, ResNet-18
# SimCLR, random vs EMP vs the leading selection rule (--rules, default easy_emp) at 0.7,
# 3 seeds; prints the compare --baseline table. Past the time limit, run it again: it resumes.
# Uses .venv when present. Usage: bash tools/gpu_study.sh [--reduced] [--rules R1,R2]
set -euo pipefail
cd "$(dirname "$0")/.."
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
exec timeout 540 "$python" tools/gpu_study.py "$@"
