"""Data parallelism over MPI: 2 ranks train exactly as 1 process at the same global batch (mpiexec, localhost)."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.backend import get_backend, to_numpy
from mlp_backend.data import make_synthetic

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None or __import__("importlib").util.find_spec("mpi4py") is None,
                                reason="needs mpi4py and an MPI launcher (pip install 'mlp-backend[mpi]' mpich)")

WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import mlp_backend as mlp
    from mlp_backend.backend import to_numpy
    from mlp_backend.data import make_synthetic
    from mlp_backend.distributed import local_device, local_rank

    sys.path.insert(0, sys.argv[3])
    from test_distributed import job

    model, kwargs = job(sys.argv[2])
    history = model.fit(*kwargs.pop("data"), distributed="mpi", **kwargs)
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.Get_rank()
    np.save(f"{sys.argv[1]}/rank{rank}.npy", to_numpy(model.flat_params))
    np.save(f"{sys.argv[1]}/val{rank}.npy", np.asarray(history.val_loss + history.val_accuracy))
    np.save(f"{sys.argv[1]}/local{rank}.npy", [local_rank(), local_device(count=1), local_device(count=2)])
""")


def job(kind):
    """The same training job for one process and for each MPI rank."""
    data = make_synthetic(n_samples=800, n_features=8, n_classes=3, seed=1)
    X, y = data.X_train[:640], data.y_train[:640]  # 20 global batches of 32
    if kind in ("sgd", "validated"):
        model = mlp.build_mlp([8, 16, 3], "tanh", dtype="float64", seed=0)
        more = dict(validation_data=(data.X_test[:101], data.y_test[:101]), epochs=3) if kind == "validated" else {}
        return model, {"data": (X, y), "optimizer": mlp.SGD(0.1), "epochs": 1, "batch_size": 32, "seed": 5, **more}
    if kind == "nccl":  # CuPy arrays, one GPU per rank, reduced over NCCL
        from mlp_backend.distributed import local_device

        model = mlp.build_mlp([8, 16, 3], "tanh", dtype="float64", seed=0, backend="cupy", device=local_device())
        return model, {"data": (X, y), "optimizer": mlp.SGD(0.1), "epochs": 1, "batch_size": 32, "seed": 5}
    if kind == "staged":  # arrays on a device MPI cannot read: staged through host buffers
        model = mlp.build_mlp([8, 16, 3], "tanh", dtype="float64", seed=0, backend="array_api_strict",
                              device="device1")
        return model, {"data": (X, y), "optimizer": mlp.SGD(0.1), "epochs": 1, "batch_size": 32, "seed": 5}
    model = mlp.build_mlp([8, 16, 3], "relu", dtype="float32", seed=0)
    return model, dict(data=(X, y), optimizer=mlp.Adam(1e-2), epochs=1, batch_size=32, seed=5)


def run_ranks(tmp_path, kind, ranks=2):
    env = {**__import__("os").environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}  # Open MPI as root on 2 cores, should mpiexec be Open MPI's
    done = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, "-c", WORKER, str(tmp_path), kind,
                           str(Path(__file__).parent)], capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [np.load(tmp_path / f"rank{r}.npy") for r in range(ranks)]


@pytest.mark.parametrize("kind,tolerance", [("sgd", 1e-10), ("adam", 1e-5), ("staged", 1e-10)])
def test_two_ranks_train_as_one_process(tmp_path, kind, tolerance):
    ranks = run_ranks(tmp_path, kind)
    np.testing.assert_array_equal(ranks[0], ranks[1])  # the replicas are identical, bit for bit
    model, kwargs = job(kind)
    model.fit(*kwargs.pop("data"), **kwargs)
    np.testing.assert_allclose(ranks[0], to_numpy(model.flat_params), rtol=0, atol=tolerance)
    assert not np.array_equal(ranks[0], to_numpy(job(kind)[0].flat_params))  # and it did train
    # both ranks on this node: node-local ranks 0 and 1, one GPU shared by both, two GPUs one each
    assert sorted(np.load(tmp_path / f"local{r}.npy").tolist() for r in range(2)) == [[0, 0, 0], [1, 0, 1]]


def _gpus() -> int:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy, no driver
        return 0


@pytest.mark.gpu
@pytest.mark.skipif(_gpus() < 2, reason="needs CuPy and 2 CUDA GPUs (NCCL refuses two ranks on one GPU)")
def test_two_gpus_over_nccl_train_as_one_process(tmp_path):
    ranks = run_ranks(tmp_path, "nccl")
    np.testing.assert_array_equal(ranks[0], ranks[1])
    model, kwargs = job("nccl")
    model.fit(*kwargs.pop("data"), **kwargs)
    np.testing.assert_allclose(ranks[0], to_numpy(model.flat_params), rtol=0, atol=1e-10)


def test_device_arrays_are_staged_and_host_arrays_are_not():
    from mlp_backend.distributed import MPICommunicator, StagedCommunicator, communicator

    with pytest.warns(RuntimeWarning, match="single process"):
        assert type(communicator("mpi", backend=get_backend("numpy"))) is MPICommunicator
        staged = communicator("mpi", backend=get_backend("array_api_strict", device="device1"))
    assert type(staged) is StagedCommunicator
    import array_api_strict as xp

    on_device = xp.asarray([1.0, 2.0], device=xp.Device("device1"))
    staged.allreduce_sum(on_device)  # one rank: the sum is the array itself, back on its device
    assert on_device.device == xp.Device("device1") and to_numpy(on_device).tolist() == [1.0, 2.0]
    with pytest.warns(RuntimeWarning, match="single process"):
        plain = communicator("mpi")
    with pytest.raises(TypeError, match="takes host arrays .* use distributed='mpi', which stages them"):
        plain.allreduce_sum(on_device)


def test_nccl_gets_rank_0s_id_through_mpi_and_reduces_in_place_on_the_stream(monkeypatch):
    """The NCCL wiring against a stand-in for cupy.cuda.nccl (no GPU here): the unique id crosses MPI as a
    buffer and comes back the same type, the reduction is in place on the current stream's pointer."""
    import os
    import types

    from mlp_backend.distributed import NCCLCommunicator

    calls, uid = [], os.urandom(128)

    class Comm:
        def __init__(self, size, commId, rank):
            calls.append(("init", size, commId, rank))

        def allReduce(self, *args):
            calls.append(("allReduce", *args))

        def bcast(self, *args):
            calls.append(("bcast", *args))
    nccl = types.SimpleNamespace(NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_INT64=4, NCCL_INT8=0, NCCL_SUM=0, NCCL_MAX=2,
                                 get_unique_id=lambda: uid, NcclCommunicator=Comm)
    stream = types.SimpleNamespace(ptr=4242)
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: stream))
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy)
    with pytest.warns(RuntimeWarning, match="single process"):
        comm = NCCLCommunicator(nccl=nccl)
    assert calls == [("init", 1, uid, 0)]
    grads = types.SimpleNamespace(dtype=np.dtype(np.float32), size=1000, flags=types.SimpleNamespace(c_contiguous=True),
                                  data=types.SimpleNamespace(ptr=9000))
    comm._device_allreduce(grads, "sum")
    comm._device_allreduce(grads, "max")
    comm._device_broadcast(grads)
    assert calls[1:] == [("allReduce", 9000, 9000, 1000, 7, 0, 4242), ("allReduce", 9000, 9000, 1000, 7, 2, 4242),
                         ("bcast", 9000, 1000, 7, 0, 4242)]
    grads.dtype = np.dtype(np.float16)
    with pytest.raises(TypeError, match="float32/float64"):
        comm._device_allreduce(grads, "sum")
    nccl.get_unique_id = lambda: tuple(np.frombuffer(uid, dtype=np.int8).tolist())  # older CuPy: a tuple
    with pytest.warns(RuntimeWarning):
        NCCLCommunicator(nccl=nccl)
    assert calls[-1] == ("init", 1, tuple(np.frombuffer(uid, dtype=np.int8).tolist()), 0)


def test_one_process_is_told_it_is_alone():
    model, kwargs = job("sgd")
    with pytest.warns(RuntimeWarning, match="launch with mpiexec -n N"):
        model.fit(*kwargs.pop("data"), distributed="mpi", **kwargs)


def test_batches_smaller_than_the_world_are_refused(monkeypatch):
    from mlp_backend import distributed

    class Two(distributed.MPICommunicator):  # two ranks that agree on everything
        def __init__(self):
            self.rank, self.size = 0, 2

        def agree_on(self, settings):
            pass
    monkeypatch.setattr(distributed, "communicator", lambda spec, backend: Two())
    model, _ = job("sgd")
    data = make_synthetic(n_samples=100, n_features=8, n_classes=3, seed=1)
    with pytest.raises(ValueError, match="leaves a batch of 1, fewer than the 2 ranks"):
        model.fit(data.X_train[:33], data.y_train[:33], batch_size=32, distributed="mpi")


def test_mlp_train_distributed_writes_one_run_folder_equal_to_one_process(tmp_path):
    common = ["-m", "mlp_backend.cli", "train", "--dataset", "synthetic", "--hidden", "16", "--epochs", "2",
              "--dtype", "float64", "--optimizer", "sgd", "--lr", "0.05", "--no-progress", "--quiet"]
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, *common, "--distributed", "--out",
                           str(tmp_path / "dp")], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "single")], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    dp = mlp.load_checkpoint(tmp_path / "dp" / "model.safetensors").model.flat_params
    single = mlp.load_checkpoint(tmp_path / "single" / "model.safetensors").model.flat_params
    np.testing.assert_allclose(dp, single, rtol=0, atol=1e-10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dp", "single"]  # the replica wrote nothing


KILLABLE = textwrap.dedent("""
    import os, sys
    import mlp_backend as mlp
    from mlp_backend.data import make_synthetic
    from mpi4py import MPI

    # one write of one line: print's separate writes of its pieces interleave across the ranks
    os.write(1, f"{MPI.COMM_WORLD.Get_rank()} {os.getpid()}\\n".encode())
    data = make_synthetic(n_samples=4000, n_features=20, n_classes=4, seed=1)
    model = mlp.build_mlp([20, 256, 256, 4], "relu", seed=0)
    model.fit(data.X_train, data.y_train, epochs=10_000, batch_size=16, distributed="mpi", checkpoint=sys.argv[1],
              checkpoint_every=50)  # every rank reads at the checkpoint steps: one schedule of collectives
""")


def test_a_killed_rank_ends_the_run_and_the_last_checkpoint_is_intact(tmp_path):
    import signal
    import time

    from mlp_backend.checkpoint import read

    path = tmp_path / "ck.safetensors"
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-c", KILLABLE, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids = dict(tuple(map(int, proc.stdout.readline().split())) for _ in range(2))
    deadline = time.time() + 120
    while not path.exists() and time.time() < deadline:  # an epoch done and saved by rank 0
        time.sleep(0.05)
    assert path.exists()
    os_kill = __import__("os").kill
    os_kill(pids[1], signal.SIGKILL)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the surviving rank did not stop within 60 s of its peer's death")
    assert code != 0
    tensors, meta = read(path)  # verified: digest over tensors and metadata
    assert "param/dense0.W" in tensors


def test_a_sweep_through_mpi4py_futures_gives_the_local_report(tmp_path):
    grid = ["sweep", "--dataset", "synthetic", "--hidden", "16", "--epochs", "2", "--optimizers", "sgd,adam",
            "--seeds", "0,1", "--quiet"]
    local = subprocess.run([sys.executable, "-m", "mlp_backend.cli", *grid, "--out", str(tmp_path / "local")],
                           capture_output=True, text=True, timeout=240)
    assert local.returncode == 0, local.stderr[-3000:]
    done = subprocess.run([MPIEXEC, "-n", "3", sys.executable, "-m", "mpi4py.futures", "-m", "mlp_backend.cli", *grid,
                           "--executor", "mpi", "--out", str(tmp_path / "mpi")], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "mpi" / "report.md").read_text() == (tmp_path / "local" / "report.md").read_text()
    import json

    def runs(folder):
        return [{k: v for k, v in r.items() if k != "seconds" and k != "history"} | {"loss": r["history"]["loss"]}
                for r in json.loads((tmp_path / folder / "sweep.json").read_text())["results"]]
    assert runs("mpi") == runs("local") and len(runs("mpi")) == 4


def test_mlp_train_distributed_with_checkpoint_every_reads_in_step_on_every_rank(tmp_path):
    """Rank 0 saves every few steps and the replicas, which write nothing, read at the same steps."""
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "mlp_backend.cli", "train", "--dataset",
                           "synthetic", "--hidden", "16", "--epochs", "2", "--checkpoint-every", "7", "--no-progress",
                           "--quiet", "--distributed", "--out", str(tmp_path / "dp")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "dp" / "model.safetensors").exists()


def test_validation_is_scored_in_shares_and_equals_one_process(tmp_path):
    run_ranks(tmp_path, "validated")
    scores = [np.load(tmp_path / f"val{r}.npy") for r in range(2)]
    np.testing.assert_array_equal(scores[0], scores[1])  # every rank reports the same reduced scores
    model, kwargs = job("validated")
    history = model.fit(*kwargs.pop("data"), **kwargs)
    np.testing.assert_allclose(scores[0], history.val_loss + history.val_accuracy, rtol=1e-10)
    assert len(history.val_loss) == 3


@pytest.mark.parametrize("differing", [["--hidden", "32"], ["--batch-size", "16"], ["--dtype", "float64"],
                                       ["--lr", "0.5"]])
def test_ranks_started_differently_end_at_once_with_one_line(tmp_path, differing):
    """MPMD: rank 1 gets another option than rank 0. Every rank stops before the first collective that could hang,
    within seconds, naming what differs, without a traceback."""
    common = ["-m", "mlp_backend.cli", "train", "--dataset", "digits", "--hidden", "64", "--batch-size", "8",
              "--epochs", "2", "--seed", "0", "--no-progress", "--quiet", "--distributed"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([MPIEXEC, "-n", "1", sys.executable, *common, "--out", str(tmp_path / "m"), ":",
                           "-n", "1", sys.executable, *common, *differing, "--out", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode != 0
    assert "were started with different settings" in done.stderr and "Traceback" not in done.stderr
