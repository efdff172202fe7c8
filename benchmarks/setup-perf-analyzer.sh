#!/usr/bin/env bash
# Install the peer of our benchmarks, perf_analyzer, into a directory of its own
# (default .bench/perf_analyzer), without touching the project's virtual environment:
#   - perf_analyzer from the tritonclient 2.49.0 manylinux wheel (bin/perf_analyzer).
#     tritonclient 2.60's binary needs glibc 2.38; Debian 12 has 2.36, so 2.49's is used.
#   - libcudart.so.12 from PyPI's nvidia-cuda-runtime-cu12 (perf_analyzer links it even
#     without a GPU).
#   - Debian's libb64-0d (apt-get, as root or through sudo, only when missing).
# Prints the two paths the benchmark takes: --perf-analyzer and --cuda-lib.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.bench/perf_analyzer}
python=${PYTHON:-python3}
if ! dpkg-query -W -f='${Status}' libb64-0d 2>/dev/null | grep -q "install ok installed"; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libb64-0d >/dev/null
fi
if [ ! -x "$dest/bin/perf_analyzer" ]; then
  mkdir -p "$dest/wheels"
  "$python" -m pip download -q --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$dest/wheels" "tritonclient==2.49.0" "nvidia-cuda-runtime-cu12==12.4.127"
  "$python" - "$dest" <<'PY'
import pathlib, sys, zipfile
dest = pathlib.Path(sys.argv[1])
for wheel in (dest / "wheels").glob("*.whl"):
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.endswith("bin/perf_analyzer"):
                target = dest / "bin" / "perf_analyzer"
            elif "/cuda_runtime/lib/" in name and ".so" in name:
                target = dest / "lib" / pathlib.Path(name).name
            else:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
            target.chmod(0o755)
PY
  rm -rf "$dest/wheels"
fi
echo "--perf-analyzer $dest/bin/perf_analyzer --cuda-lib $dest/lib"
