"""TensorBoard and MLflow logging, and hyper-parameter search with Optuna (mlp tune)."""
import copy
import csv
import json
import pickle

import numpy as np
import pytest

import mlp_backend as mlp
from mlp_backend.cli import main

DIGITS = ["--dataset", "digits", "--hidden", "32", "--batch-size", "32", "--quiet", "--no-progress"]


def _history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_tensorboard_event_files_hold_history_csv(tmp_path):
    pytest.importorskip("tensorboardX")
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run = tmp_path / "run"
    assert main(["train", *DIGITS, "--epochs", "4", "--val-split", "0.2", "--tensorboard", "--out", str(run)]) == 0
    events = accumulator.EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    rows = _history(run)
    for key in ("train_loss", "val_loss", "val_accuracy", "train_accuracy", "lr"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [1, 2, 3, 4]
        np.testing.assert_allclose([s.value for s in scalars], [float(r[key]) for r in rows], rtol=1e-6, atol=1e-6)
    with open(run / "iterations.csv") as f:
        iterations = [float(r["loss"]) for r in csv.DictReader(f)]
    batch = events.Scalars("batch_loss")  # every 50 steps
    assert [s.step for s in batch] == list(range(50, len(iterations) + 1, 50))
    np.testing.assert_allclose([s.value for s in batch], iterations[49::50], rtol=1e-6)
    assert (run / "tensorboard" / "hparams").is_dir()


def test_mlflow_one_run_per_training_run_and_a_resume_logs_each_epoch_once(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    run, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["train", *DIGITS, "--epochs", "2", "--val-split", "0.2", "--mlflow", uri, "--out", str(run)]) == 0
    assert main(["train", "--resume", str(run), "--epochs", "4"]) == 0
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mlp-backend").experiment_id])
    assert len(runs) == 1 and runs[0].info.run_name == "run" and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    rows = _history(run)
    for key in ("train_loss", "val_loss", "val_accuracy"):
        logged = client.get_metric_history(run_id, key)
        assert [m.step for m in logged] == [1, 2, 3, 4], key
        np.testing.assert_allclose([m.value for m in logged], [float(r[key]) for r in rows], rtol=1e-6)
    assert runs[0].data.params["optimizer"] == "adam" and runs[0].data.params["hidden"] == "32"
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.md", "loss.png", "model.safetensors", "history.csv"} <= artifacts


def test_models_and_callbacks_with_loggers_still_copy_and_pickle(tmp_path):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("mlflow")
    from sklearn.base import clone

    from mlp_backend.estimators import MLPClassifier
    from mlp_backend.tracking import MLflow, TensorBoard

    copies = []

    class CopyMidway(mlp.Callback):  # while the writers are open
        def on_epoch_end(self, state, logs):
            copies.extend(pickle.loads(pickle.dumps(cb)) for cb in loggers)
            copies.extend(copy.deepcopy(cb) for cb in loggers)

    loggers = [TensorBoard(tmp_path / "tb"), MLflow(f"sqlite:///{tmp_path / 'm.db'}", run_name="r")]
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)
    model = mlp.build_mlp([5, 8, 3], seed=0)
    model.fit(X, y, epochs=2, batch_size=16, callbacks=[*loggers, CopyMidway()])
    assert len(copies) == 8 and all(c._writer is None for c in copies if isinstance(c, TensorBoard))
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    estimator = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y)
    assert clone(estimator).get_params() == estimator.get_params()
    copy.deepcopy(estimator)


def _tune(tmp_path, name, *extra):
    return main(["tune", "--dataset", "digits", "--epochs", "2", "--seed", "0", "--quiet",
                 "--study-name", "s", "--out", str(tmp_path / name), *extra])


def test_mlp_tune_is_seeded_resumable_and_prunes_diverging_trials(tmp_path):
    optuna = pytest.importorskip("optuna")
    small = ["--space", str(tmp_path / "space.toml")]
    (tmp_path / "space.toml").write_text('hidden = {choices = ["32", "64,32"]}\nbatch_size = {choices = [32, 64]}\n')
    a, b = (f"sqlite:///{tmp_path / f'{n}.db'}" for n in "ab")
    assert _tune(tmp_path, "A", "--trials", "6", "--storage", a, *small) == 0
    assert _tune(tmp_path, "B", "--trials", "6", "--storage", b, *small) == 0
    trials = [json.loads((tmp_path / n / "study.json").read_text())["trials"] for n in "AB"]
    assert trials[0] == trials[1] and len(trials[0]) == 6
    report = (tmp_path / "A" / "report.md").read_text()
    assert "**Best: trial" in report and (tmp_path / "A" / "optimization_history.png").stat().st_size > 5_000
    best = json.loads((tmp_path / "A" / "best-run" / "metrics.json").read_text())
    assert best["dataset"] == "digits" and best["test_accuracy"] > 0.5
    assert _tune(tmp_path, "A", "--trials", "3", "--storage", a, *small) == 0
    assert len(optuna.load_study(study_name="s", storage=a).trials) == 9
    # learning rates up to 1e4 with plain SGD: those trials diverge and are pruned; the study finishes
    assert _tune(tmp_path, "C", "--trials", "6", "--lr-range", "1e-3,1e4", "--optimizers", "sgd", *small) == 0
    states = [t["state"] for t in json.loads((tmp_path / "C" / "study.json").read_text())["trials"]]
    assert "PRUNED" in states and "COMPLETE" in states and "FAIL" not in states


def test_tune_from_python(tmp_path):
    pytest.importorskip("optuna")
    result = mlp.tune(dataset="digits", trials=2, epochs=1, seed=0, out=str(tmp_path / "study"), quiet=True,
                      optimizers="adam", activations="relu")
    assert len(result["trials"]) == 2 and result["best_value"] == min(t["value"] for t in result["trials"])
    with pytest.raises(TypeError, match="unknown options"):
        mlp.tune(trails=3)


def test_tune_trials_on_a_dask_cluster_share_the_stored_study(tmp_path):
    pytest.importorskip("optuna")
    pytest.importorskip("dask.distributed")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    assert _tune(tmp_path, "D", "--trials", "3", "--storage", storage, "--executor", "dask",
                 "--optimizers", "adam", "--activations", "relu") == 0
    trials = json.loads((tmp_path / "D" / "study.json").read_text())["trials"]
    assert len(trials) == 3 and {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    assert (tmp_path / "D" / "best-run" / "model.safetensors").exists()
