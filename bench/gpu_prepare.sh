#!/usr/bin/env bash
# Prepare what bench/gpu_check.sh needs on a GPU machine that reaches no package index: run here (with pip and the
# network), from the repository root. Writes .whl/ (wheels the GPU image lacks) and
# .data/fashion-mnist/ (the four IDX files); both are git-ignored. Then carry .whl and .data to the GPU
# machine and run bench/gpu_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
PYV="${PYV:-3.12}"  # the GPU image's Python
rm -rf .whl && mkdir -p .whl .data/fashion-mnist
fetch() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform any -d .whl "$@"
}
# what the GPU image lacks: the Array API layers, nvmath-python (cuBLAS that a CUDA graph can record; its CUDA
# libraries are CuPy's) and an MPI with its mpiexec (mpich) for bench/distributed.py. The image's own NumPy (2.5) is
# used: kernels/numba_cuda.py loads numba-cuda under it.
fetch "array-api-compat>=1.9" "array-api-strict>=2.2" "nvmath-python>=1.0" "mpich>=4"
src=/usr/share/datasets/fashion-mnist
[ -d "$src" ] || { echo "no $src: apt-get install dataset-fashion-mnist" >&2; exit 1; }
cp "$src"/*.gz .data/fashion-mnist/
du -sh .whl .data
