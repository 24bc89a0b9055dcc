#!/usr/bin/env bash
# Set up mlp-backend on a fresh Debian machine: the real Fashion-MNIST data, a virtual environment in the
# checkout (.venv: Debian's own python3 refuses system-wide pip installs, PEP 668) holding the package and the
# test/comparison dependencies, and the compiled Numba kernels. Run from anywhere; as root or with sudo for
# the Debian packages. PYTHON=/path/to/python3 picks the interpreter (default: python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

packages=()
[ -d /usr/share/datasets/fashion-mnist ] || packages+=(dataset-fashion-mnist)
# Debian splits venv (with ensurepip) out of python3.
"$PYTHON" -c "import venv, ensurepip" 2>/dev/null || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ] && command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${packages[@]}"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
VPY=.venv/bin/python
"$VPY" -m pip install -q --upgrade pip
# Pinned so pip takes the CPU build; an unpinned torch pulls several GB of CUDA packages.
"$VPY" -m pip install -q "torch==2.13.0"
"$VPY" -m pip install -q -e ".[dev]"
# Compile the CPU kernels (the serial ones, which every batch below a million elements uses) into Numba's
# on-disk cache now, with a line per kernel group, so the first training epoch is not a silent compile.
"$VPY" -m mlp_backend.warmup
echo "Set up in $(pwd)/.venv. Run: .venv/bin/mlp train   (or: source .venv/bin/activate)"
