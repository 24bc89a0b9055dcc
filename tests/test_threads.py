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
