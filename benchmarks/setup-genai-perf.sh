#!/usr/bin/env bash
# Install the peers of benchmarks/llm_vs_genai_perf.py, each into a virtual environment of
# its own (ignored by git), without touching the project's:
#   - GenAI-Perf 0.0.16 into .venv-genai. It drives perf_analyzer, which its wheel does not
#     ship (its `perf-analyzer` dependency installs here as 0.1.0, an empty placeholder):
#     the binary comes from benchmarks/setup-perf-analyzer.sh (tritonclient 2.49.0's), put
#     on PATH by the benchmark.
#   - AIPerf 0.13.0 into .venv-aiperf.
# Both read the example model's tokenizer.json with transformers (no download).
# Prints the flags the benchmark takes.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
install() {  # install VENV PACKAGE==VERSION
  if [ ! -x "$1/bin/python" ]; then
    "$python" -m venv "$1"
  fi
  "$1/bin/python" -m pip install -q "$2"
}
install .venv-genai "genai-perf==0.0.16"
install .venv-aiperf "aiperf==0.13.0"
pa_flags=$(bash benchmarks/setup-perf-analyzer.sh | tail -n 1)
echo "--genai-perf .venv-genai/bin/genai-perf --aiperf .venv-aiperf/bin/aiperf $pa_flags"
