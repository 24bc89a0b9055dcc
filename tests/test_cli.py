import json
import subprocess
import sys

import pytest

from mlp_backend.cli import main

from conftest import AVAILABLE


def test_train_writes_the_json_summary(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert main(["train", "--dataset", "synthetic", "--epochs", "3", "--hidden", "32", "--json", str(out)]) == 0
    summary = json.loads(out.read_text())
    for key in ("test_accuracy", "test_loss", "final_train_loss", "epoch_seconds", "backend"):
        assert key in summary
    assert summary["backend"] == "numpy" and len(summary["epoch_seconds"]) == 3
    assert summary["test_accuracy"] > 0.9
    printed = capsys.readouterr().out
    assert "epoch   3/3" in printed and "test accuracy" in printed and "weighted avg" in printed


@pytest.mark.parametrize("backend", [b for b in ("array_api_strict", "torch") if b in AVAILABLE])
def test_backends_report_the_same_loss_as_numpy(tmp_path, backend):
    losses = {}
    for name in ("numpy", backend):
        out = tmp_path / f"{name}.json"
        main(["train", "--dataset", "synthetic", "--epochs", "2", "--hidden", "16", "--dtype", "float64",
              "--backend", name, "--quiet", "--json", str(out)])
        losses[name] = json.loads(out.read_text())["final_train_loss"]
    assert losses[backend] == pytest.approx(losses["numpy"], rel=1e-4)


@pytest.mark.parametrize("args,message", [
    (["train", "--epochs", "0"], "must be positive"),
    (["train", "--backend", "jax"], "invalid choice"),
    (["train", "--hidden", "10,x"], "comma-separated integers"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "mnist IDX files not found"),
    (["train", "--dataset", "synthetic", "--activation", "swish"], "unknown activation 'swish'"),
])
def test_bad_arguments_exit_2_with_one_line(args, message):
    done = subprocess.run([sys.executable, "-m", "mlp_backend.cli", *args], capture_output=True, text=True)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
