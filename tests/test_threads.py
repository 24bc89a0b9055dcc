"""The thread count follows the CPUs a process may use (affinity, a container's cgroup quota), not the machine's."""
import os

import pytest

from mlp_backend import threads


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "150000 100000\n"}, 1.5),               # cgroup v2: docker --cpus 1.5
    ({"cpu.max": "max 100000\n"}, None),                 # v2, unlimited
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),     # v1, unlimited
    ({}, None),                                          # no cgroup files: unknown
])
def test_the_cgroup_quota_is_read_from_either_version(tmp_path, files, quota):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert threads.cgroup_cpu_quota(tmp_path) == quota


def test_the_usable_cpus_are_the_affinity_capped_by_the_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert threads.available_cpus(tmp_path) == 64  # no quota
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.available_cpus(tmp_path) == 2  # 1.5 CPUs of time: 2 threads, rounded up
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert threads.available_cpus(tmp_path) == 1  # pinned to one core


def test_prepare_sets_the_thread_counts_only_where_fewer_cpus_are_usable(monkeypatch):
    for key in (*threads.THREAD_COUNTS, "MLP_THREADS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    threads.prepare()
    assert {key: os.environ[key] for key in threads.THREAD_COUNTS} == dict.fromkeys(threads.THREAD_COUNTS, "2")

    for key in threads.THREAD_COUNTS:
        monkeypatch.delenv(key)
    monkeypatch.setattr(threads, "available_cpus", lambda: 64)
    threads.prepare()  # the whole machine: the libraries' own defaults stay
    assert not any(key in os.environ for key in threads.THREAD_COUNTS)

    monkeypatch.setenv("MLP_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    threads.prepare()  # MLP_THREADS wins over the usable CPUs; a variable already set is kept
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3" and os.environ["OMP_NUM_THREADS"] == "5"
    assert threads.default_setting() is None  # MLP_THREADS fixes the command line's count too
    monkeypatch.delenv("MLP_THREADS")
    assert threads.default_setting() == "auto"


def test_openblas_workers_spin_longer_only_where_the_mlp_command_follows_the_load(monkeypatch):
    monkeypatch.delenv("MLP_THREADS", raising=False)
    follows = threads.command_follows_load
    assert follows(["/venv/bin/mlp", "train", "--epochs", "3"])
    assert not follows(["/venv/bin/mlp", "train", "--threads", "2"]) and not follows(["mlp", "bench", "--threads=1"])
    assert not follows(["-c"]) and not follows(["/x/train.py"]) and not follows([])  # the Python API: counts fixed
    for argv, spin in ((["/venv/bin/mlp", "train"], "20"), (["/venv/bin/mlp", "train", "--threads", "2"], "4"),
                       (["-m"], "4")):
        monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
        threads.prepare(argv)
        assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == spin
    monkeypatch.setenv("MLP_THREADS", "2")  # a fixed count from the environment
    assert not follows(["/venv/bin/mlp", "train"])
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "9")
    threads.prepare(["/venv/bin/mlp", "train"])
    assert os.environ["OPENBLAS_THREAD_TIMEOUT"] == "9"  # the user's own setting is kept


def _stat(path, busy_ticks, running):
    """A /proc/stat with ``busy_ticks`` of user time and 10,000 idle ticks, and ``running`` running threads."""
    path.write_text(f"cpu  {busy_ticks} 0 0 10000 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\nprocs_running {running}\n")


def test_the_governor_leaves_other_processes_their_cpus(tmp_path):
    hz = os.sysconf("SC_CLK_TCK")
    stat = tmp_path / "stat"
    governor = threads.LoadGovernor(most=2, stat=stat, tasks=tmp_path / "none")  # the caller its one running thread
    clock = iter([0.0, 1.0, 2.0, 3.0, 4.0])
    own = iter([0.0, 1.0, 2.0, 4.0, 6.0])
    governor.clock, governor.cpu_clock = lambda: next(clock), lambda: next(own)
    _stat(stat, 0, running=2)
    assert governor.count() == 1  # at the start: one other thread running (only the caller's of this process)
    _stat(stat, 2 * hz, running=1)
    assert governor.count() == 1  # in 1 s: 2 CPU-seconds busy, 1 of them ours: another process took a core
    _stat(stat, 3 * hz, running=1)
    assert governor.count() == 2  # 1 busy second, all ours: the other process has gone
    _stat(stat, 5 * hz, running=1)
    assert governor.count() == 2  # both cores ours
    _stat(stat, int(7.4 * hz), running=1)
    assert governor.count() == 2  # 0.4 of a core taken by others: rounds to none
    assert threads.LoadGovernor(most=4, stat=tmp_path / "missing").count() == 4  # no statistics: all usable CPUs


def test_the_governors_first_count_leaves_out_this_processes_own_running_threads(tmp_path):
    """At the start, a BLAS worker of this process still spinning after a product is not another process's load."""
    stat, tasks = tmp_path / "stat", tmp_path / "task"
    for tid, state in ((100, "R"), (101, "R"), (102, "S")):  # the caller, a spinning worker, a sleeping one
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (python3 (x)) {state} 1 2 3\n")
    _stat(stat, 0, running=2)
    assert threads.LoadGovernor(most=2, stat=stat, tasks=tasks).count() == 2  # both running threads are ours
    _stat(stat, 0, running=3)
    assert threads.LoadGovernor(most=2, stat=stat, tasks=tasks).count() == 1  # and one of another process
    assert threads.LoadGovernor(most=2, stat=stat, tasks=tmp_path / "none").count() == 1  # unknown: the caller only


def test_fit_sets_each_epochs_threads_and_restores_them(monkeypatch):
    from threadpoolctl import threadpool_info

    import mlp_backend as mlp
    from mlp_backend.data import make_synthetic

    def blas_threads():  # NumPy's BLAS: the one the products run on
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]

    before = blas_threads()
    data = make_synthetic(n_samples=300, n_features=8, n_classes=3, seed=0)
    seen = []
    on_epoch = lambda epoch, logs: seen.append(blas_threads())  # noqa: E731
    model = mlp.build_mlp([8, 16, 3], seed=0)
    history = model.fit(data.X_train, data.y_train, epochs=2, threads=1, on_epoch=on_epoch)
    assert history.threads == [1, 1] and seen == [[1], [1]]
    assert blas_threads() == before

    counts = iter([2, 1, 1, 2])
    monkeypatch.setattr(threads.LoadGovernor, "count", lambda self: next(counts))
    seen.clear()
    history = model.fit(data.X_train, data.y_train, epochs=4, threads="auto", on_epoch=on_epoch)
    assert history.threads == [2, 1, 1, 2]
    assert seen == [[2], [1], [1], [2]]
    assert blas_threads() == before
    with pytest.raises(ValueError, match="threads must be a positive integer or 'auto'"):
        model.fit(data.X_train, data.y_train, epochs=1, threads=0)

    def fail(epoch, logs):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        model.fit(data.X_train, data.y_train, epochs=2, threads=1, on_epoch=fail)
    assert blas_threads() == before  # back even when training ends in an exception
