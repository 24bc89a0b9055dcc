#!/usr/bin/env bash
# Set up mlp-backend on a fresh Debian machine: the real Fashion-MNIST data, the package, and the
# test/comparison dependencies. Run as root (or with sudo available) from the repository root.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi
if command -v apt-get >/dev/null && [ ! -d /usr/share/datasets/fashion-mnist ]; then
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
python3 -m pip install -q --upgrade pip
# Pinned so pip takes the CPU build; an unpinned torch pulls several GB of CUDA packages.
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[dev]"
