#!/usr/bin/env bash
# Installs everything attnc needs on a fresh Debian 12 machine, by name:
# Debian packages through apt-get, and a project-local Python venv (.venv)
# with Halide 21 (its wheel carries the C++ SDK), CMake >= 3.28, Ninja, and
# what the Python package needs to build and be tested.
# Idempotent: when everything is present it only checks and returns.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

debian_packages=(
  llvm-19-dev libmlir-19-dev mlir-19-tools llvm-19-tools
  libfmt-dev libcli11-dev nlohmann-json3-dev libspng-dev
  libfreetype-dev fonts-dejavu-core
  libgtest-dev libgmock-dev libbenchmark-dev
  ninja-build ccache g++ pkgconf python3-venv python3-pip python3-dev
  # libFuzzer targets and the ASan/UBSan build (scripts/test.sh, fuzz.sh)
  clang-19 libclang-rt-19-dev
  # OpenCL on the CPU: GPU-scheduled kernels run on PoCL (host-opencl)
  pocl-opencl-icd ocl-icd-libopencl1 ocl-icd-opencl-dev clinfo
)
missing=()
for p in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Exact pins: the kernels and the compile cache depend on them. nanobind and
# scikit-build-core build the Python package (python/), pytest, ml_dtypes and
# torch test it (torch: the custom op and torch.compile tests).
python_packages=(halide==21.0.0 cmake==4.1.2 ninja==1.13.0 numpy==2.3.4
  nanobind==3.1.0 scikit-build-core==1.1.2 pytest==9.2.0 ml_dtypes==0.7.0 torch==2.15.0)
venv="$root/.venv"
stamp="$venv/.attnc-pins"
want="${python_packages[*]}"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: creating $venv with ${python_packages[*]}"
  # Debian's python3 is the interpreter whose venv module we just installed.
  py=/usr/bin/python3; [ -x "$py" ] || py=python3
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${python_packages[@]}"
  echo "$want" > "$stamp"
fi
