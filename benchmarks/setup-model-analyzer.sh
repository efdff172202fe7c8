#!/usr/bin/env bash
# Install the peer of benchmarks/search_vs_model_analyzer.py, Triton Model Analyzer 1.58,
# into a virtual environment of its own (default .bench/model_analyzer), never into the
# project's .venv: its pins (optuna, numba, grpcio, tritonclient[all]) are not ours.
#   - triton-model-analyzer 1.58.0 from PyPI (pip's configured index, nothing else).
#   - tritonclient 2.49.0, the release of the perf_analyzer we drive (setup-perf-analyzer.sh).
#   - MA drives perf_analyzer 2.49 (benchmarks/setup-perf-analyzer.sh installs it) and
#     launches the tritonserver of the nvidia-pytriton wheel through a wrapper the benchmark
#     writes at run time; neither is installed here.
#   - Debian's python3-venv only when `python -m venv` cannot make an environment.
# Prints the path the benchmark takes: --model-analyzer.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.bench/model_analyzer}
python=${PYTHON:-python3}
if ! "$python" -c "import ensurepip, venv" 2>/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
fi
if [ ! -x "$dest/bin/model-analyzer" ]; then
  "$python" -m venv "$dest"
  "$dest/bin/python" -m pip install -q "triton-model-analyzer==1.58.0" "tritonclient[all]==2.49.0"
fi
"$dest/bin/model-analyzer" --help >/dev/null
echo "--model-analyzer $dest/bin/model-analyzer"
