#!/usr/bin/env bash
# Every GPU figure in one call, on a bare GPU machine given this repository plus what bench/gpu_prepare.sh made
# (.whl/ and .data/): installs the project, runs the graph-capture probe (each product of a step recorded alone, by
# kernels/gemm.py whole and split and by cuBLAS through nvmath-python), mlp bench against PyTorch CUDA (eager and CUDA
# graph) and JAX's epoch scan at batch 64 / 256 / 4096 (and graph mode with MLP_GRAPH_PRODUCTS=cublas), the 15-epoch
# default job on CuPy, the GPU tests on the machine's own NumPy, mlp parity with CuPy, and bench/distributed.py over
# 4 and 8 MPI ranks on the CPU cores. Appends the dated record (GPU, driver, CUDA, CuPy, NumPy, numba-cuda, nvmath)
# to bench/RESULTS.md and leaves it in $OUT/summary.txt (default bench/gpu_out) beside each step's log, or, with
# LOGS=/tmp/some-dir, beside logs.tar.gz. About 8 minutes on an H200; each step has a time limit and its log reaches
# $OUT as it finishes, so a run cut short still leaves what it measured. mlp bench runs 2 epochs per configuration:
# the first pays compilation (and graph mode's recording), the second is measured.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/gpu_out}"
LOGS="${LOGS:-$OUT}"  # elsewhere (LOGS=/tmp/...), the logs also reach $OUT as one logs.tar.gz after each step
mkdir -p "$OUT" "$LOGS"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then  # what the image lacks (bench/gpu_prepare.sh); its own NumPy is used
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . >/tmp/gpu_check_install.log 2>&1 \
    || { cat /tmp/gpu_check_install.log; exit 1; }
MLP=("$PY" -m mlp_backend.cli)
DATA=(--data-dir "${DATA_DIR:-.data/fashion-mnist}")

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    "$PY" - <<'PYEOF'
import importlib
for name in ("numpy", "cupy", "numba", "numba_cuda", "nvmath", "torch", "jax"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as e:
        print(f"{name} unavailable ({type(e).__name__}: {e})")
try:
    import cupy
    print(f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}")
except Exception as e:
    print(f"CUDA runtime unavailable ({e})")
from mlp_backend.kernels import describe
print("kernels for cupy:", describe("cupy"))
PYEOF
} 2>&1 | tee "$OUT/summary.txt"

step() {  # name, time limit (s), then the command; its output to $LOGS/name.log, its status to the summary
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc, $((SECONDS - start)) s" | tee -a "$OUT/summary.txt"
    tail -n 25 "$LOGS/$name.log"
    [ "$LOGS" = "$OUT" ] || tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
}
step graph_probe 150 "$PY" bench/graph_probe.py --batch-size 64  # which parts of a step CuPy can capture as a graph
step bench 330 "${MLP[@]}" bench "${DATA[@]}" --batch-sizes 64,256,4096 --epochs 2 --impl cupy-graph \
    --impl cupy-fused --impl cupy-reference --impl pytorch-cuda --impl pytorch-cuda-graph --impl jax-scan \
    --json "$OUT/bench.json"
# graph mode with cuBLAS's products (through nvmath-python) instead of kernels/gemm.py's, where it is installed
if "$PY" -c "import nvmath" 2>/dev/null; then
    step bench_cublas 120 env MLP_GRAPH_PRODUCTS=cublas "${MLP[@]}" bench "${DATA[@]}" --batch-sizes 64,256,4096 \
        --epochs 2 --impl cupy-graph --json /tmp/gpu_check_bench_cublas.json
fi
step train 90 "${MLP[@]}" train --backend cupy --epochs 15 "${DATA[@]}" --quiet --no-progress --out /tmp/gpu_check_run
# Then every test that runs on CuPy or needs a GPU (the simulator's run in CI).
parallel=(); "$PY" -c "import xdist" 2>/dev/null && parallel=(-n 8)
step tests 200 "$PY" -m pytest -q -p no:cacheprovider "${parallel[@]}" -m "not cudasim" \
    -k "cupy or gpu" --ignore=tests/test_docs.py -rfEs tests
step parity 120 "${MLP[@]}" parity
# Data parallelism over this machine's CPU cores (NumPy ranks, one core each): the machine's MPI, else the carried one
MPIEXEC=$(command -v mpiexec || { [ -x /tmp/site/bin/mpiexec ] && echo /tmp/site/bin/mpiexec; })
if [ -n "$MPIEXEC" ]; then
    step distributed 150 env MLP_DATA=.data LD_LIBRARY_PATH="/tmp/site/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 bash -c \
        'for n in 4 8; do echo "== mpiexec -n $n"; "$0" -n "$n" "$1" bench/distributed.py || exit; done' \
        "$MPIEXEC" "$PY"
fi

block=$(
    echo
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    echo "## $(date -u '+%Y-%m-%d') — bench/gpu_check.sh on $gpu"
    echo
    echo '```'
    cat "$OUT/summary.txt"
    echo
    sed -n '/^| implementation/,$p' "$LOGS/bench.log"
    if [ -f "$LOGS/bench_cublas.log" ]; then
        echo "MLP_GRAPH_PRODUCTS=cublas:"
        grep "^| cupy-graph" "$LOGS/bench_cublas.log"
    fi
    grep -h "test accuracy" "$LOGS/train.log"
    tail -n 3 "$LOGS/parity.log"
    [ -f "$LOGS/distributed.log" ] && grep -v "^\s*$" "$LOGS/distributed.log" | tail -n 12
    grep -E "captured|not captured|gemm tile" "$LOGS/graph_probe.log"
    echo '```'
)
printf '%s\n' "$block" >>bench/RESULTS.md
printf '%s\n' "$block" | tee "$OUT/summary.txt"  # the summary becomes the whole record
