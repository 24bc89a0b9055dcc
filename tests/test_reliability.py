"""Resume, atomic saves under SIGKILL, determinism, divergence and fuzzed inputs."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.checkpoint import CheckpointError, read
from mlp_backend.data import IDXError, read_idx, write_idx
from mlp_backend.data import make_synthetic
from mlp_backend.kernels import cpu


def problem(n=1200):
    data = make_synthetic(n_samples=n, n_features=12, n_classes=4, seed=3)
    return data.X_train, data.y_train


def model_and_fit_args():
    model = mlp.build_mlp([12, 32, 16, 4], "relu", dropout=0.2, seed=7)
    return model, dict(optimizer=mlp.Adam(1e-2), epochs=3, batch_size=16, seed=5,
                       callbacks=[mlp.EarlyStopping("train_loss", patience=5)])


def test_resume_mid_epoch_is_bit_identical(tmp_path):
    X, y = problem()
    full, kw = model_and_fit_args()
    expected = full.fit(X, y, **kw)
    # interrupted after 50 steps (the checkpoint every 25 steps holds step 50, mid-epoch 1)
    part, kw = model_and_fit_args()

    class Stop(Exception):
        pass

    def stop_at_50(step, steps, loss):
        if step == 50:
            raise Stop

    with pytest.raises(Stop):
        part.fit(X, y, **kw, checkpoint=tmp_path / "ck.safetensors", checkpoint_every=25, on_step=stop_at_50)
    resumed, kw = model_and_fit_args()
    history = resumed.fit(X, y, **kw, resume=tmp_path / "ck.safetensors")
    np.testing.assert_array_equal(resumed.flat_params, full.flat_params)
    assert history.loss == expected.loss and history.train_accuracy == expected.train_accuracy
    assert history.lr == expected.lr
    for name in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(resumed.optimizer.state[name], full.optimizer.state[name])


def test_resume_with_a_different_configuration_is_refused(tmp_path):
    X, y = problem(300)
    model, kw = model_and_fit_args()
    model.fit(X, y, **{**kw, "epochs": 1}, checkpoint=tmp_path / "ck.safetensors")
    other, kw = model_and_fit_args()
    with pytest.raises(ValueError, match="cannot resume .*batch_size: 16 in the checkpoint, 32 now"):
        other.fit(X, y, **{**kw, "batch_size": 32}, resume=tmp_path / "ck.safetensors")
    plain = mlp.save_checkpoint(model, tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="not a training checkpoint"):
        other.fit(X, y, **kw, resume=plain)


RUNNER = textwrap.dedent("""
    import sys, time
    import mlp_backend as mlp
    from mlp_backend.data import make_synthetic
    data = make_synthetic(n_samples=1200, n_features=12, n_classes=4, seed=3)
    model = mlp.build_mlp([12, 32, 16, 4], "relu", dropout=0.2, seed=7)
    print("ready", flush=True)
    model.fit(data.X_train, data.y_train, optimizer=mlp.Adam(1e-2), epochs=3, batch_size=16, seed=5,
              callbacks=[mlp.EarlyStopping("train_loss", patience=5)], checkpoint=sys.argv[1],
              checkpoint_every=7, on_step=lambda *a: time.sleep(0.002))
""")


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_killed_at_a_random_step_then_resumed_is_bit_identical(tmp_path, trial):
    X, y = problem()
    full, kw = model_and_fit_args()
    full.fit(X, y, **kw)
    path = tmp_path / "ck.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(np.random.default_rng(trial).uniform(0.05, 0.6))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # the kill landed mid-run, not after the child had finished
    resumed, kw = model_and_fit_args()
    resumed.fit(X, y, **kw, resume=path)
    np.testing.assert_array_equal(resumed.flat_params, full.flat_params)


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    import mlp_backend as mlp
    model = mlp.build_mlp([64, 256, 256, 10], seed=0)
    i = 0
    while True:
        i += 1
        model.set_parameter("dense0.b", np.full(256, float(i)))
        mlp.save_checkpoint(model, sys.argv[1], extra={"i": i})
        if i == 2:
            print("saved", flush=True)
""")


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_broken_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    for trial in range(12):
        folder = tmp_path / str(trial)
        folder.mkdir()
        path = folder / "m.safetensors"
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "saved"
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for candidate in (path, folder / "m.safetensors.prev"):
            ck = mlp.load_checkpoint(candidate)  # verifies the SHA-256
            b = ck.model.get_parameter("dense0.b")
            assert np.all(b == ck.extra["i"])
        # killed between the two renames, .prev already equals the current file
        assert mlp.load_checkpoint(path).extra["i"] >= mlp.load_checkpoint(str(path) + ".prev").extra["i"]
        for p in folder.iterdir():  # a kill may leave temporary files, never a partial file under the final names
            assert p.name in ("m.safetensors", "m.safetensors.prev") or p.name.endswith((".tmp", ".tmp.prev"))


def test_same_seed_is_bit_identical_including_parallel_kernels(monkeypatch):
    monkeypatch.setattr(cpu, "PARALLEL_MIN_ELEMENTS", 1)  # every kernel takes its parallel path
    X, y = problem(600)
    runs = []
    for _ in range(2):
        model, kw = model_and_fit_args()
        model.fit(X, y, **kw)
        runs.append(model.flat_params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])


def test_divergence_stops_before_the_update_and_keeps_the_last_good_checkpoint(tmp_path):
    X, y = problem(400)
    model = mlp.build_mlp([12, 16, 4], seed=0)
    path = tmp_path / "ck.safetensors"
    model.fit(X, y, epochs=1, checkpoint=path)
    good = read(path)[0]

    def poison(step, steps, loss):  # an infinite weight: the next step's loss and gradient blow up
        model.get_parameter("dense0.W")[0, 0] = np.inf

    with pytest.raises(FloatingPointError, match="became non-finite at epoch 1, step 2"):
        model.fit(X, y, epochs=1, checkpoint=path, on_step=poison)
    after = read(path)[0]
    for k in good:
        np.testing.assert_array_equal(after[k], good[k])  # nothing written after the failure


def test_nonfinite_gradient_with_finite_loss_is_caught():
    from mlp_backend.losses import Loss

    class InfGrad(Loss):
        name, task = "inf_grad", "regression"

        def value_and_grad(self, xp, ops, output, target):
            g = xp.zeros_like(output)
            g[0, 0] = float("inf")
            return xp.sum(output * 0.0), g

    model = mlp.build_mlp([3, 2], seed=0)
    before = model.flat_params.copy()
    with pytest.raises(FloatingPointError, match="gradient became non-finite at epoch 1, step 1"):
        model.fit(np.ones((4, 3)), np.ones((4, 2)), loss=InfGrad(), epochs=1, check_finite="all")
    np.testing.assert_array_equal(model.flat_params, before)
    # by default the corrupted update shows in the next step's loss: stopped one step later
    with pytest.raises(FloatingPointError, match="loss became non-finite at epoch 1, step 2"):
        model.fit(np.ones((4, 3)), np.ones((4, 2)), loss=InfGrad(), epochs=1, batch_size=2)
    with pytest.raises(ValueError, match="check_finite must be"):
        model.fit(np.ones((4, 3)), np.ones((4, 2)), loss="mse", check_finite="sometimes")


def test_idx_fuzz_truncation_at_every_byte_and_bit_flips(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", arr)
    raw = (tmp_path / "a.idx").read_bytes()
    bad = tmp_path / "bad.idx"
    for cut in range(len(raw)):
        bad.write_bytes(raw[:cut])
        with pytest.raises(IDXError):
            read_idx(bad)
    rng = np.random.default_rng(0)
    for _ in range(500):
        flipped = bytearray(raw)
        pos = int(rng.integers(0, len(raw)))
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        bad.write_bytes(bytes(flipped))
        try:
            out = read_idx(bad)
        except IDXError:
            assert pos < 16  # only header flips are refused; data flips cannot be seen without a checksum
            continue
        if pos < 16:  # the type byte became another one-byte type (uint8 <-> int8): the image loader refuses it
            assert pos == 2 and out.dtype != arr.dtype and out.shape == arr.shape
            continue
        # IDX has no checksum (downloads are SHA-256 checked): a data flip reads as exactly that one changed value
        assert out.dtype == arr.dtype and out.shape == arr.shape
        assert np.flatnonzero(out.ravel() != arr.ravel()).tolist() == [pos - 16]
    forged = bytes([0, 0, 8, 3]) + (2**31).to_bytes(4, "big") * 3
    bad.write_bytes(forged)
    with pytest.raises(IDXError, match="over the"):
        read_idx(bad)


def test_checkpoint_fuzz_truncation_at_every_byte(tmp_path):
    model = mlp.build_mlp([3, 2], seed=0)
    path = mlp.save_checkpoint(model, tmp_path / "m.safetensors")
    raw = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    for cut in range(len(raw)):
        bad.write_bytes(raw[:cut])
        with pytest.raises(CheckpointError):
            read(bad)


def test_forged_safetensors_offsets_are_rejected(tmp_path):
    import json
    import struct

    def forge(header: dict, data: bytes):
        blob = json.dumps(header).encode()
        return struct.pack("<Q", len(blob)) + blob + data

    meta = {"__metadata__": {"format": "mlp-backend/1"}}
    cases = {
        "out_of_range": {**meta, "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}},
        "overlap": {**meta, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
        "huge_shape": {**meta, "a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}},
    }
    for name, header in cases.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(forge(header, b"\0" * 16))
        with pytest.raises(CheckpointError):
            read(path)


def test_a_failing_disk_raises_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    model = mlp.build_mlp([3, 2], seed=0)
    path = mlp.save_checkpoint(model, tmp_path / "m.safetensors", extra={"v": 1})

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        mlp.save_checkpoint(model, path, extra={"v": 2})
    monkeypatch.undo()
    assert mlp.load_checkpoint(path).extra == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary file left behind


def test_cli_divergence_exits_non_zero_naming_the_step(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", "train", "--dataset", "synthetic",
                           "--optimizer", "sgd", "--lr", "1e12", "--epochs", "3", "--no-progress",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert done.returncode != 0
    assert "became non-finite at epoch" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one line, no NumPy warnings before it


# -- what a run leaves behind: nothing lost, nothing half-made, no silent wrong number ----------------------
SWEEP = ["sweep", "--dataset", "digits", "--epochs", "3", "--batch-size", "16", "--hidden", "32", "--seeds", "0",
         "--optimizers", "sgd", "--lrs", "0.05,1e6,0.01", "--quiet"]


def test_a_failing_sweep_point_is_recorded_and_the_others_run(tmp_path, capsys):
    import json

    from mlp_backend.cli import main

    out = tmp_path / "sweep"
    assert main([*SWEEP, "--out", str(out)]) == 0
    results = json.loads((out / "sweep.json").read_text())["results"]
    assert [(r["lr"], r["status"]) for r in results] == [(0.05, "ok"), (1e6, "failed"), (0.01, "ok")]
    assert "became non-finite" in results[1]["error"] and "\n" not in results[1]["error"]
    report = (out / "report.md").read_text()
    assert "| lr=0.05 | 1 |" in report and "| lr=0.01 | 1 |" in report and "## Failed runs" in report
    # an existing sweep is neither replaced nor mixed unasked; --resume keeps its finished points
    assert main([*SWEEP, "--out", str(out)]) == 2
    assert "already holds a sweep" in capsys.readouterr().err
    before = (out / "sweep.json").read_text()
    assert main([*SWEEP, "--out", str(out), "--resume"]) == 0
    again = json.loads((out / "sweep.json").read_text())["results"]
    assert [r for r in again if r["status"] == "ok"] == [r for r in json.loads(before)["results"]
                                                         if r["status"] == "ok"]


def test_a_finite_divergence_is_on_the_record_and_can_fail_the_run(tmp_path, capsys):
    import json

    from mlp_backend.cli import main

    run = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--epochs", "3", "--hidden", "32", "--optimizer", "adam", "--lr", "1e6",
            "--quiet", "--no-progress", "--out", str(run)]
    assert main([*args, "--fail-on-divergence"]) == 3
    assert "mlp: warning: training diverged" in capsys.readouterr().err
    diverged = json.loads((run / "metrics.json").read_text())["diverged"]
    assert diverged and "exploded" in diverged and "**Diverged**" in (run / "report.md").read_text()
    assert main([*args, "--overwrite"]) == 0  # recorded either way; failing is asked for
    sweep = tmp_path / "sweep"
    assert main(["sweep", "--dataset", "digits", "--epochs", "3", "--hidden", "32", "--seeds", "0", "--optimizers",
                 "adam,sgd", "--lrs", "1e6", "--quiet", "--out", str(sweep)]) == 0
    statuses = [r["status"] for r in json.loads((sweep / "sweep.json").read_text())["results"]]
    assert "diverged" in statuses and "| optimizer=adam | 1 |" in (sweep / "report.md").read_text()
    assert "diverged: seed 0" in (sweep / "report.md").read_text()


def test_a_run_that_fails_early_leaves_no_folder(tmp_path, capsys):
    from mlp_backend.cli import main

    for extra in (["--patience", "2"], ["--backend", "cupy"] if "cupy" not in mlp.available_backends() else []):
        if not extra:
            continue
        out = tmp_path / extra[0].strip("-")
        assert main(["train", "--dataset", "digits", "--quiet", "--out", str(out), *extra]) == 2
        assert not out.exists(), extra
    assert capsys.readouterr().err.count("mlp: error:") == 2


def test_every_checkpoint_a_run_writes_evaluates_to_the_runs_own_numbers(tmp_path, capsys):
    """A training checkpoint carries the input scaling: evaluating it (after Ctrl-C, say) gives the run's test
    accuracy, not that of unscaled inputs; a file without it is refused."""
    import json

    from mlp_backend.cli import main

    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "2", "--hidden", "32", "--checkpoint-every", "7",
                 "--quiet", "--no-progress", "--out", str(run)]) == 0
    recorded = json.loads((run / "metrics.json").read_text())["test_accuracy"]
    capsys.readouterr()
    assert main(["evaluate", str(run / "checkpoint.safetensors")]) == 0
    assert f"test accuracy {recorded:.4f}" in capsys.readouterr().out
    mlp.save_checkpoint(mlp.build_mlp([64, 8, 10]), tmp_path / "bare.safetensors")
    assert main(["evaluate", str(tmp_path / "bare.safetensors"), "--dataset", "digits"]) == 2
    assert "does not record the input scaling" in capsys.readouterr().err


def test_resume_on_other_data_is_refused_unless_allowed(tmp_path):
    X, y = problem()
    model, kwargs = model_and_fit_args()
    model.fit(X, y, checkpoint=tmp_path / "ck.safetensors", **{**kwargs, "epochs": 1})
    other = X + 1.0  # the same shape, other content
    again, kwargs = model_and_fit_args()
    with pytest.raises(ValueError, match="trained on other data"):
        again.fit(other, y, resume=tmp_path / "ck.safetensors", **kwargs)
    again, kwargs = model_and_fit_args()
    history = again.fit(other, y, resume=tmp_path / "ck.safetensors", allow_other_data=True, **kwargs)
    assert len(history.train_loss) == 3


def test_a_damaged_checkpoint_on_resume_falls_back_to_the_previous_one(tmp_path):
    X, y = problem()
    model, kwargs = model_and_fit_args()
    path = tmp_path / "ck.safetensors"
    model.fit(X, y, checkpoint=path, **{**kwargs, "epochs": 2})  # epoch 1's file is kept as ck.safetensors.prev
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    again, kwargs = model_and_fit_args()
    with pytest.warns(RuntimeWarning, match=r"ck.safetensors is damaged .* previous checkpoint .*ck.safetensors.prev"):
        history = again.fit(X, y, resume=path, **kwargs)
    assert len(history.train_loss) == 3


def test_devices_and_implementations_that_cannot_run_are_one_line(tmp_path):
    """--device cuda:0 on a CPU torch, and mlp bench implementations that cannot run here: one line each, no
    traceback, no folder; bench skips what cannot run and fails only when nothing can."""
    cli = [sys.executable, "-m", "mlp_backend.cli"]
    if "torch" in mlp.available_backends():
        import torch

        if not torch.cuda.is_available():
            done = subprocess.run([*cli, "train", "--dataset", "digits", "--backend", "torch", "--device", "cuda:0",
                                   "--out", str(tmp_path / "t")], capture_output=True, text=True)
            assert done.returncode == 2 and "torch has no CUDA device here" in done.stderr
            assert "Traceback" not in done.stderr and not (tmp_path / "t").exists()
    if "cupy" in mlp.available_backends():
        pytest.skip("CuPy is installed: every bench implementation may run")
    done = subprocess.run([*cli, "bench", "--dataset", "digits", "--epochs", "2", "--batch-sizes", "64", "--impl",
                           "numpy-fused", "--impl", "cupy-fused", "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0 and "mlp bench: skipped cupy-fused: ImportError" in done.stderr
    assert "| numpy-fused | 64 |" in done.stdout and "Traceback" not in done.stderr
    done = subprocess.run([*cli, "bench", "--dataset", "digits", "--impl", "cupy-fused"], capture_output=True, text=True)
    assert done.returncode == 2 and "no implementation could run here" in done.stderr


def test_after_a_nan_stop_the_kept_checkpoint_gave_a_finite_loss(tmp_path):
    """Checkpoints every step: the one kept is not the state just before the NaN (its next loss was the NaN) but
    the one before it, whose next loss was read finite."""
    import re

    from mlp_backend.data import load_dataset

    data = load_dataset("digits")
    model, path = mlp.build_mlp([64, 64, 10], seed=0), tmp_path / "ck.safetensors"
    with pytest.raises(FloatingPointError) as stop:
        model.fit(data.X_train, data.y_train, optimizer=mlp.SGD(1e8), epochs=3, batch_size=16, checkpoint=path,
                  checkpoint_every=1)
    bad = int(re.search(r"step (\d+)", str(stop.value)).group(1))  # 1-based: its loss, at the weights after
    kept = mlp.load_checkpoint(path, allow_nonfinite=True).extra["training"]    # bad - 1 steps, was NaN
    assert kept["step"] == bad - 2 and all(np.isfinite(v) for v, _ in kept["batch_losses"])


def _forged(path, out, **changes):
    """A copy of the checkpoint at ``path`` with metadata entries changed (None: removed) and the digest
    recomputed, as a forger would."""
    from safetensors.numpy import save_file

    from mlp_backend.checkpoint import _digest

    tensors, meta = read(path)
    meta = {**meta, **changes}
    meta = {k: v for k, v in meta.items() if v is not None}
    if "sha256" in meta:
        meta["sha256"] = _digest(tensors, meta)
    save_file(tensors, str(out), metadata=meta)
    return out


def test_forged_but_consistent_metadata_is_refused_field_by_field(tmp_path, capsys):
    import json

    from mlp_backend.cli import main

    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet", "--no-progress",
                 "--out", str(run)]) == 0
    model = run / "model.safetensors"
    extra = json.loads(read(model)[1]["extra"])
    with pytest.raises(CheckpointError, match="field model_config is missing"):
        mlp.load_checkpoint(_forged(model, tmp_path / "a.safetensors", model_config=None))
    with pytest.raises(CheckpointError, match="no SHA-256 digest"):
        mlp.load_checkpoint(_forged(model, tmp_path / "b.safetensors", sha256=None))
    for change, field in (({"scaling": {"kind": "standardizer", "mean": [0.1], "scale": [-1.0]}}, "scaling.scale"),
                          ({"scaling": {"kind": "sideways"}}, "scaling"),
                          ({"scaling": {"kind": "minmax", "min": [0.0]}}, "scaling.span"),
                          ({"dataset": "/etc/passwd"}, "dataset")):
        forged = _forged(model, tmp_path / "c.safetensors", extra=json.dumps({**extra, **change}))
        capsys.readouterr()
        assert main(["evaluate", str(forged)]) == 2
        assert f"field extra.{field}" in capsys.readouterr().err


def test_a_failed_overwrite_leaves_the_run_it_was_to_replace(tmp_path):
    from mlp_backend.cli import main

    run = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "16", "--quiet", "--no-progress",
                 "--out", str(run)]) == 0
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file() and not f.name.startswith(".")}
    assert main(["train", "--dataset", "digits", "--epochs", "3", "--hidden", "64", "--batch-size", "16",
                 "--optimizer", "sgd", "--lr", "1e8", "--quiet", "--no-progress", "--out", str(run),
                 "--overwrite"]) == 2  # stops at a NaN loss
    after = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file() and not f.name.startswith(".")}
    assert after == before and not any(f.name.startswith(".replaced") for f in run.iterdir())
    assert main(["train", "--dataset", "digits", "--epochs", "1", "--hidden", "8", "--quiet", "--no-progress",
                 "--out", str(run), "--overwrite"]) == 0  # one that finishes does replace it
    assert '"hidden": [\n    8\n  ]' in (run / "config.json").read_text()


def test_inputs_beyond_the_dtypes_range_are_named_as_the_inputs_problem():
    X, y = problem(100)
    with pytest.raises(ValueError, match=r"X has values up to .*e\+30\d, beyond float32.s range"):
        mlp.build_mlp([12, 8, 4], seed=0).fit(X.astype(np.float64) * 1e300, y, epochs=1)


def test_the_run_folder_lock_is_taken_before_the_data_is_loaded(tmp_path, monkeypatch, capsys):
    import fcntl

    from mlp_backend.cli import main
    from mlp_backend.commands import train

    run = tmp_path / "run"
    run.mkdir()
    holder = open(run / ".lock", "a+")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another writer holds the folder
    monkeypatch.setattr(train, "prepare_data", lambda args: pytest.fail("the data was loaded before the lock"))
    try:
        assert main(["train", "--dataset", "digits", "--out", str(run)]) == 2
    finally:
        holder.close()
    assert "is being written by" in capsys.readouterr().err


def test_progress_rates_average_over_the_epoch_and_plot_titles_count_seeds(tmp_path, monkeypatch):
    import io

    from mlp_backend import plots
    from mlp_backend.progress import Progress

    progress = Progress(1, bar=True, always=True, stream=io.StringIO())
    progress.step(1, 10, 0.5)
    assert progress.bar.smoothing == 0  # steps arrive in bursts: an instantaneous rate would be meaningless
    titles = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, ax, **kw: titles.append(ax.get_title()))
    one = {"train_loss": [1.0, 0.5]}
    plots.plot_comparison({"a": [one]}, "train_loss", tmp_path / "x.png")
    plots.plot_comparison({"a": [one, {"train_loss": [0.9, 0.4]}]}, "train_loss", tmp_path / "y.png")
    assert titles == ["train loss", "train loss: mean ± std over seeds"]
