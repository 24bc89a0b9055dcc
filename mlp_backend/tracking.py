"""Training runs in the tools people compare runs with: TensorBoard event files and MLflow runs.

Both are :class:`~mlp_backend.train.Callback` s for ``fit`` (``callbacks=[TensorBoard("logs")]``) and behind
``mlp train --tensorboard [DIR]`` / ``--mlflow URI``. Per-epoch values go under history.csv's column names
(``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``lr``, ``seconds``) with the 1-based epoch
as their step; the mini-batch loss as ``batch_loss`` every ``every_n_steps`` steps, taken from the step
program's reads (no extra synchronisation). Writers and clients are made when training begins and never
pickled, so models, callbacks and estimators still ``deepcopy``, ``clone`` and pickle. Both run on rank 0 only
in a distributed fit.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable

from .train import Callback
from .types import PathLike

EPOCH_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def _flat_params(config: dict | None) -> dict:
    """A configuration as flat scalar hyper-parameters (lists as text; None left out)."""
    out = {}
    for key, value in (config or {}).items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, (list, tuple)):
            out[key] = ",".join(map(str, value))
    return out


def _artifact_root(tracking_uri: str) -> str | None:
    """Beside a SQLite database, its artifacts (MLflow's default, ./mlruns, is wherever the program runs); a server or
    a folder store keeps its own default."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


class _Lazy(Callback):
    """A callback whose writer is made on first use and dropped from copies and pickles."""

    root_only = True
    _handle_name = "_writer"

    def __getstate__(self):
        state = dict(self.__dict__)
        state[self._handle_name] = None
        return state


class TensorBoard(_Lazy):
    """TensorBoard event files in ``log_dir`` (tensorboardX), as a ``fit`` callback.

    Per-epoch scalars (history.csv's columns, the epoch as the step), ``batch_loss`` every ``every_n_steps``
    steps, and ``hparams`` with the final scores at the end.

    Parameters
    ----------
    log_dir : str or Path
        The folder to write event files into.
    every_n_steps : int, default 50
        Log ``batch_loss`` every this many steps.
    hparams : dict, optional
        The run's configuration, shown in TensorBoard's HPARAMS tab.
    """

    def __init__(self, log_dir: PathLike, every_n_steps: int = 50, hparams: dict | None = None):
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps!r}")
        self.log_dir, self.every_n_steps, self.hparams = str(log_dir), every_n_steps, hparams
        self._writer = None

    def _open(self):
        if self._writer is None:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as e:
                raise ImportError(f"TensorBoard logging needs tensorboardX: pip install 'mlp-backend[tensorboard]' "
                                  f"({e})") from None
            self._writer = SummaryWriter(logdir=self.log_dir)
        return self._writer

    def on_train_begin(self, state):
        self._open()

    def on_batch_end(self, state, step, logs):
        if logs["global_step"] % self.every_n_steps == 0:
            self._open().add_scalar("batch_loss", logs["loss"], logs["global_step"])

    def on_epoch_end(self, state, logs):
        writer = self._open()
        for key in EPOCH_KEYS:
            if logs.get(key) is not None:
                writer.add_scalar(key, logs[key], logs["epoch"])
        writer.flush()

    def on_train_end(self, state):
        writer = self._open()
        if self.hparams:
            h = state.history
            final = {f"hparam/{k}": getattr(h, k)[-1] for k in ("train_loss", "val_loss", "val_accuracy")
                     if getattr(h, k)}
            writer.add_hparams(_flat_params(self.hparams), final, name="hparams")
        writer.close()
        self._writer = None


class MLflow(_Lazy):
    """One MLflow run per training run, as a ``fit`` callback.

    Parameters from ``params``, per-epoch metrics with their epoch as the step, ``batch_loss`` every
    ``every_n_steps`` steps, artifacts through :meth:`log_artifacts`.

    Parameters
    ----------
    tracking_uri : str
        Any MLflow tracking URI: ``sqlite:///runs.db``, a server, a folder.
    run_name : str, optional
        The MLflow run's name.
    params : dict, optional
        Logged as the run's parameters.
    experiment : str, default "mlp-backend"
        The MLflow experiment.
    record : str or Path, optional
        A JSON file that keeps the MLflow run's id: a training run resumed with the same ``record`` continues
        the same MLflow run, and epochs it already logged are not logged again.
    every_n_steps : int, default 50
        Log ``batch_loss`` every this many steps.
    end_with_training : bool, default True
        Mark the MLflow run finished when training ends (False to log artifacts first, then :meth:`finish`).
    """

    _handle_name = "_client"

    def __init__(self, tracking_uri: str, run_name: str | None = None, params: dict | None = None,
                 experiment: str = "mlp-backend", record: PathLike | None = None, every_n_steps: int = 50,
                 end_with_training: bool = True):
        self.tracking_uri, self.run_name, self.params, self.experiment = str(tracking_uri), run_name, params, experiment
        self.record = None if record is None else str(record)
        self.every_n_steps, self.end_with_training = every_n_steps, end_with_training
        self.run_id, self._logged, self._last_step, self._client = None, set(), 0, None

    def client(self):
        if self._client is None:
            try:
                from mlflow.tracking import MlflowClient
            except ImportError as e:
                raise ImportError(f"MLflow logging needs mlflow: pip install 'mlp-backend[mlflow]' ({e})") from None
            import logging

            for name in ("mlflow", "alembic"):  # a new database's table creation is logged at INFO
                logging.getLogger(name).setLevel(logging.WARNING)
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def _start(self):
        client = self.client()
        if self.run_id is None and self.record is not None and Path(self.record).exists():
            self.run_id = json.loads(Path(self.record).read_text())["run_id"]
        if self.run_id is not None:  # a resumed run: the epochs and steps it logged are not logged twice
            self._logged = {m.step for m in client.get_metric_history(self.run_id, "train_loss")}
            self._last_step = max((m.step for m in client.get_metric_history(self.run_id, "batch_loss")), default=0)
            client.update_run(self.run_id, status="RUNNING")
            return
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(
            self.experiment, artifact_location=_artifact_root(self.tracking_uri))
        self.run_id = client.create_run(experiment_id, run_name=self.run_name).info.run_id
        if self.record is not None:
            Path(self.record).write_text(json.dumps({"tracking_uri": self.tracking_uri, "run_id": self.run_id}))
        from mlflow.entities import Param

        params = [Param(k, str(v)[:6000]) for k, v in _flat_params(self.params).items()]
        if params:
            client.log_batch(self.run_id, params=params)

    def on_train_begin(self, state):
        self._start()

    def _metrics(self, values: dict, step: int):
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client().log_batch(self.run_id, metrics=[Metric(k, float(v), stamp, step) for k, v in values.items()])

    def on_batch_end(self, state, step, logs):
        if logs["global_step"] % self.every_n_steps == 0 and logs["global_step"] > self._last_step:
            self._metrics({"batch_loss": logs["loss"]}, logs["global_step"])

    def on_epoch_end(self, state, logs):
        if logs["epoch"] in self._logged:
            return
        self._metrics({k: logs[k] for k in EPOCH_KEYS if logs.get(k) is not None}, logs["epoch"])
        self._logged.add(logs["epoch"])

    def on_train_end(self, state):
        if self.end_with_training:
            self.finish()

    def log_artifacts(self, paths: Iterable[PathLike]):
        """Files (a run folder's plots, report, checkpoint) as artifacts of the MLflow run.

        Parameters
        ----------
        paths : iterable of str or Path
            The files; those that do not exist are skipped.
        """
        for path in paths:
            if Path(path).is_file():
                self.client().log_artifact(self.run_id, str(path))

    def finish(self, status: str = "FINISHED"):
        """Mark the MLflow run ended.

        Parameters
        ----------
        status : str, default "FINISHED"
            MLflow's run status: ``"FINISHED"``, ``"FAILED"`` or ``"KILLED"``.
        """
        if self.run_id is not None:
            self.client().set_terminated(self.run_id, status=status)
