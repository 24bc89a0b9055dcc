import json
import os
import subprocess
import sys

import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.cli import main, read_history_csv

from conftest import AVAILABLE

SMALL = ["--dataset", "synthetic", "--hidden", "32", "--no-progress"]


def test_train_writes_a_run_folder_and_the_json_summary(tmp_path, capsys):
    out, run = tmp_path / "run.json", tmp_path / "run"
    assert main(["train", *SMALL, "--epochs", "3", "--val-split", "0.1", "--json", str(out), "--out", str(run)]) == 0
    summary = json.loads(out.read_text())
    for key in ("test_accuracy", "test_loss", "final_train_loss", "epoch_seconds", "backend"):
        assert key in summary
    assert summary["backend"] == "numpy" and len(summary["epoch_seconds"]) == 3
    assert summary["test_accuracy"] > 0.9
    printed = capsys.readouterr().out
    assert "epoch   3/3" in printed and "test accuracy" in printed and "weighted avg" in printed
    names = {p.name for p in run.iterdir()}
    assert {"config.json", "metrics.json", "history.csv", "iterations.csv", "model.safetensors", "loss.png",
            "accuracy.png", "confusion_matrix.png", "report.md"} <= names
    for png in ("loss.png", "accuracy.png", "confusion_matrix.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (run / png).stat().st_size > 10_000
    report = (run / "report.md").read_text()
    assert "## Classification report" in report and "weighted avg" in report and "| true \\ predicted |" in report
    history = read_history_csv(run)
    assert len(history["val_loss"]) == 3 and history["train_loss"] == pytest.approx(summary["train_loss"])
    # the saved model evaluates to the same test accuracy
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run / "model.safetensors")]) == 0
    assert f"test accuracy {summary['test_accuracy']:.4f}" in capsys.readouterr().out


@pytest.mark.parametrize("backend", [b for b in ("array_api_strict", "torch") if b in AVAILABLE])
def test_backends_report_the_same_loss_as_numpy(tmp_path, backend):
    losses = {}
    for name in ("numpy", backend):
        out = tmp_path / f"{name}.json"
        main(["train", *SMALL, "--epochs", "2", "--hidden", "16", "--dtype", "float64", "--backend", name,
              "--quiet", "--json", str(out), "--out", str(tmp_path / name)])
        losses[name] = json.loads(out.read_text())["final_train_loss"]
    assert losses[backend] == pytest.approx(losses["numpy"], rel=1e-4)


def test_fused_and_reference_kernels_agree_from_the_command_line(tmp_path):
    losses = {}
    for mode in ("auto", "reference"):
        out = tmp_path / f"{mode}.json"
        main(["train", *SMALL, "--epochs", "2", "--kernels", mode, "--quiet", "--json", str(out),
              "--out", str(tmp_path / mode)])
        losses[mode] = json.loads(out.read_text())["train_loss"]
    np.testing.assert_allclose(losses["auto"], losses["reference"], rtol=1e-5)


def test_toml_config_sets_options_and_flags_win(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('dataset = "synthetic"\nepochs = 2\nhidden = "16,8"\nlr = 0.01\nno-progress = true\n')
    out = tmp_path / "s.json"
    assert main(["train", "--config", str(cfg), "--epochs", "1", "--quiet", "--json", str(out),
                 "--out", str(tmp_path / "r")]) == 0
    summary = json.loads(out.read_text())
    assert summary["epochs"] == 1 and summary["lr"] == 0.01
    assert json.loads((tmp_path / "r" / "config.json").read_text())["hidden"] == [16, 8]


def test_sweep_writes_mean_and_std_report_and_plots(tmp_path, capsys):
    assert main(["sweep", *SMALL[:-1], "--epochs", "2", "--optimizers", "sgd,adam", "--seeds", "0,1",
                 "--val-split", "0.1", "--quiet", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| optimizer=sgd | 2 |" in report and "| optimizer=adam | 2 |" in report and " ± " in report
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert len(data["results"]) == 4


def test_val_split_takes_a_number_of_samples(tmp_path):
    out = tmp_path / "run.json"
    assert main(["train", *SMALL, "--epochs", "1", "--val-split", "150", "--quiet", "--json", str(out),
                 "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(out.read_text())
    assert summary["validation_samples"] == 150 and summary["train_samples"] + 150 == 1600


def test_digits_trains_with_nothing_downloaded(tmp_path):
    out = tmp_path / "d.json"
    assert main(["train", "--dataset", "digits", "--hidden", "64", "--epochs", "15", "--quiet", "--no-progress",
                 "--out", str(tmp_path / "run"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["test_accuracy"] > 0.9


def test_decision_boundary_plot(tmp_path):
    import mlp_backend as mlp
    from mlp_backend.plots import plot_decision_boundary

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    model = mlp.build_mlp([2, 16, 2], "tanh")
    model.fit(X, y, epochs=20, optimizer=mlp.Adam(1e-2))
    plot_decision_boundary(model, X, y, tmp_path / "b.png")
    assert (tmp_path / "b.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="2-D inputs"):
        plot_decision_boundary(model, np.zeros((3, 3)), [0, 1, 0], tmp_path / "c.png")


def test_plot_gradcheck_and_datasets_commands(tmp_path, capsys):
    main(["train", *SMALL, "--epochs", "2", "--quiet", "--out", str(tmp_path / "a")])
    main(["train", *SMALL, "--epochs", "2", "--quiet", "--seed", "1", "--out", str(tmp_path / "b")])
    assert main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--metric", "train_loss",
                 "--out", str(tmp_path / "cmp.png")]) == 0
    assert main(["plot", "--activations", "--out", str(tmp_path / "act.png")]) == 0
    for png in ("cmp.png", "act.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    capsys.readouterr()
    assert main(["gradcheck", "--activation", "tanh", "--batch-norm"]) == 0
    assert "passed: max relative error" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    assert "digits" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["train", "--epochs", "0"], "must be positive"),
    (["train", "--backend", "jax"], "invalid choice"),
    (["train", "--hidden", "10,x"], "comma-separated integers"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "mnist IDX files not found"),
    (["train", "--dataset", "synthetic", "--activation", "swish"], "invalid choice: 'swish' (choose from 'identity'"),
    (["train", "--dataset", "synthetic", "--patience", "2"], "--patience needs validation data"),
    (["evaluate"], "give a run folder or a checkpoint"),
    (["train", "--val-split", "1.5"], "must be in [0, 1)"),
    (["train", "--dataset", "synthetic", "--val-split", "99999"], "split size must be between 1 and"),
    (["evaluate", "--checkpoint", "/nonexistent.safetensors"], "No such file"),
    (["plot", "--out", "x.png"], "give run folders"),
])
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_resume_a_killed_run_from_the_command_line(tmp_path):
    """A run killed mid-training continues from RUN_DIR and ends where an uninterrupted run ends."""
    import signal
    import time

    args = [*SMALL, "--epochs", "30", "--dropout", "0.1", "--checkpoint-every", "5", "--quiet"]
    main(["train", *args, "--out", str(tmp_path / "full"), "--json", str(tmp_path / "full.json")])
    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mlp_backend.cli", "train", *args, "--out", str(run)])
    deadline = time.time() + 60
    while not (run / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert main(["train", "--resume", str(run), "--json", str(tmp_path / "resumed.json")]) == 0
    full, resumed = (json.loads((tmp_path / f).read_text()) for f in ("full.json", "resumed.json"))
    assert resumed["train_loss"] == full["train_loss"] and resumed["test_accuracy"] == full["test_accuracy"]
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", "train", "--resume", str(run), "--lr", "0.5"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "cannot resume" in done.stderr and "--lr 0.5" in done.stderr


def test_paired_ratio_pairs_passes_and_skips_failed_runs():
    from mlp_backend.bench import paired_ratio

    assert paired_ratio([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == pytest.approx(1.0)  # median of 0.5, 1, 1.5
    assert paired_ratio([1.0, None, 3.0], [2.0, 2.0, None]) == pytest.approx(0.5)
    assert paired_ratio([1.0], None) is None and paired_ratio([None], [1.0]) is None


def test_products_alone_count_every_batch_of_an_epoch_and_the_partial_one_at_its_size(monkeypatch):
    from mlp_backend import bench

    shapes = []
    real_matmul = np.matmul
    monkeypatch.setattr(bench, "_timed", lambda fn: (fn(), 1.0)[1])  # each pass of a batch size "takes" 1 s
    monkeypatch.setattr(bench.np, "matmul",
                        lambda a, b, out: shapes.append(a.shape + b.shape) or real_matmul(a, b, out=out))
    assert bench.products_seconds(130, [6, 5, 3], 64, repeats=2) == 3.0  # two full batches and one of 2 rows
    assert bench.products_seconds(128, [6, 5, 3], 64, repeats=2) == 2.0
    # forward x @ W and dW = x.T @ dz per layer, dx = dz @ W.T but for the first layer
    assert shapes[:5] == [(64, 6, 6, 5), (6, 64, 64, 5), (64, 5, 5, 3), (5, 64, 64, 3), (64, 3, 3, 5)]
    assert (2, 6, 6, 5) in shapes


def test_bench_runs_on_a_small_dataset_and_writes_json_and_plot(tmp_path, capsys):
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    impls = ["numpy-fused", "numpy-reference"] + (["pytorch-cpu"] if "torch" in AVAILABLE else [])
    assert main(["bench", "--dataset", "digits", "--batch-sizes", "64", *(a for i in impls for a in ("--impl", i)),
                 "--epochs", "2", "--repeats", "2", "--quiet", "--json", str(out), "--plot", str(png)]) == 0
    report = json.loads(out.read_text())
    assert {r["impl"] for r in report["results"]} == set(impls)
    for r in report["results"]:
        assert r["seconds_per_epoch"] > 0 and r["test_accuracy"] > 0.8 and r["vs_gemm_floor"] > 0
        assert r["vs_products"] == pytest.approx(r["seconds_per_epoch"] / report["meta"]["products_seconds"]["64"])
        assert r["seconds_per_epoch"] == min(r["epoch_seconds"][1:])
        assert r["seconds_per_epoch"] == min(r["pass_seconds"]) and len(r["pass_seconds"]) == 2
        if "pytorch-cpu" in impls:
            anchor = next(a for a in report["results"] if a["impl"] == "pytorch-cpu")["pass_seconds"]
            assert r["vs_pytorch_cpu_paired"] == pytest.approx(np.median(np.divide(r["pass_seconds"], anchor)))
    assert report["meta"]["sgemm_gflops"] > 1 and png.stat().st_size > 10_000
    assert report["meta"]["blas"].startswith(("openblas", "mkl", "blis", "BLAS not reported"))
    assert "| numpy-fused | 64 |" in capsys.readouterr().out


def test_bench_table_leaves_the_cpu_floors_out_of_gpu_rows():
    from mlp_backend import bench

    meta = {"date": "d", "machine": "m", "blas": "b", "sgemm_gflops": 900.0, "gemm_floor_seconds": 0.15,
            "products_seconds": {"64": 0.5}, "epochs": 2}
    row = {"impl": "cupy-graph", "batch_size": 64, "seconds_per_epoch": 0.55, "samples_per_second": 1e5,
           "peak_rss_mib": 1500, "test_accuracy": 0.86, "vs_pytorch_cpu": None, "vs_pytorch_cpu_paired": None,
           "vs_gemm_floor": None, "vs_products": None}
    assert "| cupy-graph | 64 | 0.55 | 100,000 | 1500 | 0.8600 | - | - | - | - |" in bench.table(
        {"meta": meta, "results": [row]})
    # where JAX's epoch scan ran, every row's ratio to it in the same pass, in a column of its own
    jax = {**row, "impl": "jax-scan", "seconds_per_epoch": 0.06, "vs_jax_scan_paired": 1.0}
    text = bench.table({"meta": meta, "results": [{**row, "vs_jax_scan_paired": 9.25}, jax]})
    assert "| paired | vs GEMM floor | vs products alone | paired vs jax-scan |" in text
    assert "| cupy-graph | 64 | 0.55 | 100,000 | 1500 | 0.8600 | - | - | - | - | 9.25x |" in text
    assert "| jax-scan | 64 | 0.06 |" in text and text.count("---:|") == 10  # one more right-aligned column


def test_help_shows_every_option_with_its_default():
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", "train", "--help"], capture_output=True, text=True)
    text = " ".join(done.stdout.split())
    for expected in ("passes over the training set (default: 10)", "learning rate (default: 0.001)",
                     "samples per mini-batch (default: 64)", "(default: relu)", "gelu", "--clip-norm", "--patience",
                     "--label-smoothing", "--schedule", "--batch-norm", "--alpha"):
        assert expected in text, expected


def test_train_options_reach_the_model_and_optimizer(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--epochs", "3", "--batch-size", "50", "--activation",
                 "leaky_relu", "--alpha", "0.2", "--batch-norm", "--clip-norm", "1.0", "--schedule", "step",
                 "--decay", "0.5", "--decay-epochs", "1", "--label-smoothing", "0.1", "--val-split", "0.2",
                 "--patience", "5", "--no-progress", "--quiet", "--out", str(run)]) == 0
    ck = mlp.load_checkpoint(run / "model.safetensors")
    layers = ck.model.config()["layers"]
    assert layers[0] == {**layers[0], "activation": "leaky_relu", "alpha": 0.2}
    assert any(layer["type"] == "BatchNorm1d" for layer in layers)
    assert ck.model.loss.label_smoothing == 0.1 and ck.optimizer.clip_norm == 1.0
    import csv

    with open(run / "history.csv") as f:
        assert [float(row["lr"]) for row in csv.DictReader(f)] == [1e-3, 5e-4, 2.5e-4]  # halved every epoch


def test_a_run_folder_is_not_reused_or_shared(tmp_path):
    import fcntl

    run = tmp_path / "run"
    args = ["train", "--dataset", "synthetic", "--epochs", "1", "--no-progress", "--quiet", "--out", str(run)]
    assert main(args) == 0
    (run / ".model.safetensors.abc.tmp").write_bytes(b"left by a killed save")
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", *args], capture_output=True, text=True)
    assert done.returncode == 2 and "already holds a run: --resume" in done.stderr
    with open(run / ".lock", "a+") as held:  # another writer holds the folder
        fcntl.flock(held, fcntl.LOCK_EX)
        held.truncate(0)
        held.write("mlp process 4242")
        held.flush()
        done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", *args, "--overwrite"], capture_output=True,
                              text=True)
    assert done.returncode == 2 and "is being written by mlp process 4242" in done.stderr
    assert main([*args, "--overwrite"]) == 0
    assert not list(run.glob(".*.tmp*"))  # the killed save's temporary file is gone


def test_evaluate_takes_a_run_folder_and_plot_names_missing_metrics(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "--no-progress", "--quiet", "--out",
                 str(run)]) == 0
    assert main(["evaluate", str(run)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert main(["plot", str(run), "--metric", "val_loss", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "has no val_loss (it has train_loss, train_accuracy" in err and "--val-split" in err
    assert not (tmp_path / "x.png").exists()


def test_parity_agrees_across_backends_and_catches_a_drifting_kernel(capsys, monkeypatch):
    args = ["parity", "--samples", "300", "--hidden", "16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "numpy / numba (cpu.py)" in out and "implementations agree" in out
    if "array_api_strict" in AVAILABLE:
        assert "array_api_strict / reference" in out
    from mlp_backend.kernels import cpu, reference

    def drifting(xp, z, b, act, alpha=0.0):  # a fused kernel that is wrong by one part in a million
        return reference.bias_act(xp, z, b, act, alpha) * (1 + 1e-6)
    monkeypatch.setattr(cpu, "bias_act", drifting)
    assert main(args) == 1
    assert "implementations DIFFER" in capsys.readouterr().out


@pytest.mark.skipif(__import__("importlib").util.find_spec("distributed") is None, reason="needs dask.distributed")
def test_a_sweep_on_a_dask_cluster_gives_the_local_report(tmp_path, capsys):
    grid = ["sweep", "--dataset", "synthetic", "--hidden", "16", "--epochs", "2", "--optimizers", "sgd,adam",
            "--seeds", "0,1", "--quiet"]
    folders = {}
    for executor in ("local", "dask"):  # dask: a cluster of worker processes started by the command
        done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", *grid, "--executor", executor,
                               "--out", str(tmp_path / executor)], capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        folders[executor] = tmp_path / executor
    assert (folders["dask"] / "report.md").read_text() == (folders["local"] / "report.md").read_text()

    def runs(folder):
        return [{k: v for k, v in r.items() if k not in ("seconds", "history")} | {"loss": r["history"]["loss"]}
                for r in json.loads((folder / "sweep.json").read_text())["results"]]
    assert runs(folders["dask"]) == runs(folders["local"]) and len(runs(folders["local"])) == 4
    assert main(["sweep", "--dataset", "synthetic", "--scheduler", "tcp://127.0.0.1:1", "--out",
                 str(tmp_path / "x")]) == 2
    assert "--scheduler goes with --executor dask" in capsys.readouterr().err


@pytest.mark.skipif(__import__("importlib").util.find_spec("jax") is None, reason="needs JAX")
def test_bench_runs_the_jax_epoch_scan_peer(tmp_path):
    from mlp_backend.bench import implementations, worker

    assert "jax-scan" in implementations(cuda=False)
    r = worker({"impl": "jax-scan", "batch_size": 64, "epochs": 2, "seed": 0, "dataset": "digits", "data_dir": None})
    assert len(r["epoch_seconds"]) == 2 and r["seconds_per_epoch"] == r["epoch_seconds"][1]
    assert r["test_accuracy"] > 0.85  # 2 epochs of the same job reach this on digits (0.94 measured after 3)


@pytest.mark.parametrize("optimizer,lr", [("adagrad", "0.05"), ("lion", "0.001")])
def test_adagrad_and_lion_train_from_the_command_line(optimizer, lr, tmp_path):
    out = tmp_path / "summary.json"
    assert main(["train", "--dataset", "digits", "--hidden", "32", "--epochs", "3", "--batch-size", "32",
                 "--optimizer", optimizer, "--lr", lr, "--quiet", "--no-progress", "--json", str(out),
                 "--out", str(tmp_path / "run")]) == 0
    summary = json.loads(out.read_text())
    assert summary["test_accuracy"] > 0.8 and summary["train_loss"][-1] < summary["train_loss"][0]


def test_small_things_a_new_user_trips_on(tmp_path, capsys):
    """An empty size is an error; help shows no "(default: None)"; mlp plot picks a metric the runs have."""
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", "train", "--hidden", "500,,100"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "comma-separated integers" in done.stderr and "usage" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", "train", "--help"], capture_output=True, text=True)
    assert "(default: None)" not in done.stdout and "$MLP_KERNELS, else auto" in done.stdout
    assert main(["train", *SMALL, "--epochs", "1", "--quiet", "--out", str(tmp_path / "a")]) == 0  # no --val-split
    assert main(["plot", str(tmp_path / "a"), "--out", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").exists()


def test_thread_waiting_and_counts_are_set_before_numpy_loads(tmp_path):
    code = ("import os, mlp_backend\nfrom threadpoolctl import threadpool_info\n"
            "print(os.environ['OPENBLAS_THREAD_TIMEOUT'], [i['num_threads'] for i in threadpool_info()"
            " if i['user_api'] == 'blas'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_NUM", "OMP_NUM", "MLP_THREADS"))}
    env.pop("OPENBLAS_THREAD_TIMEOUT", None)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, "MLP_THREADS": "1"})
    assert done.stdout.split() == ["4", "[1]"], done.stderr
    as_command = "import sys\nsys.argv[0] = '/venv/bin/mlp'\n" + code  # as the console script begins
    done = subprocess.run([sys.executable, "-c", as_command], capture_output=True, text=True, env=env)
    assert done.stdout.split()[0] == "20", done.stderr
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", "bench", "--dataset", "digits", "--impl",
                           "numpy-fused", "--batch-sizes", "64", "--epochs", "2", "--contended", "1", "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "1 busy process(es) beside each run" in done.stdout, done.stderr[-2000:]
    assert main(["train", *SMALL, "--epochs", "1", "--threads", "1", "--quiet", "--out", str(tmp_path / "t")]) == 0


def test_graph_mode_on_the_command_line(tmp_path):
    """--graph (replayed steps) and --no-graph train to the same numbers, with dropout, batch normalisation and
    global-norm clipping."""
    args = ["train", *SMALL, "--epochs", "1", "--quiet", "--threads", "1", "--dropout", "0.2", "--batch-norm",
            "--clip-norm", "1.0"]
    assert main([*args, "--graph", "--out", str(tmp_path / "g")]) == 0
    assert main([*args, "--no-graph", "--out", str(tmp_path / "n")]) == 0
    losses = [(tmp_path / run / "iterations.csv").read_text() for run in ("g", "n")]
    assert losses[0] == losses[1] and losses[0].count("\n") > 10


def test_ctrl_c_says_how_to_resume_and_the_report_times_the_console(tmp_path, capsys):
    import signal
    import time

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mlp_backend.cli", "train", *SMALL, "--epochs", "200",
                             "--checkpoint-every", "5", "--quiet", "--out", str(run)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "checkpoint.safetensors").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and f"continue with: mlp train --resume {run}" in err and "Traceback" not in err
    assert main(["train", *SMALL, "--epochs", "2", "--quiet", "--out", str(tmp_path / "b")]) == 0
    printed = float(capsys.readouterr().out.split("(")[1].split("s training")[0])
    assert f"training: {printed:.1f} s (as printed" in (tmp_path / "b" / "report.md").read_text()
