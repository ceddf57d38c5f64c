"""studies.host: workers on one host find each other through locked files; a dead worker's file is removed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from studies import host

HOLD = "from studies import host; host.register(); print('registered', flush=True); import time; time.sleep(120)"


@pytest.fixture
def host_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ATTNAS_HOST_DIR", str(tmp_path / "workers"))
    monkeypatch.setattr(host, "_registration", [])
    return tmp_path / "workers"


def _worker(env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "registered"
    return proc


def test_live_workers_are_counted_and_a_killed_ones_file_is_removed(host_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ}
    others = [_worker(env) for _ in range(2)]
    try:
        mine = host.register()
        assert json.loads(mine.read_text()) == sorted(os.sched_getaffinity(0))
        assert host.other_workers() == [frozenset(os.sched_getaffinity(0))] * 2
        others[0].send_signal(signal.SIGKILL)
        others[0].wait(10)
        assert len(host.other_workers()) == 1
        assert sorted(p.name for p in host_dir.iterdir()) == sorted([mine.name, f"{others[1].pid}.worker"])

        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("ATTNAS_THREADS", raising=False)
        monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
        cpus = len(os.sched_getaffinity(0))
        assert host.size_threads() == max(1, cpus // 2)  # shared with the one live worker
        monkeypatch.setenv("ATTNAS_THREADS", "3")
        assert host.size_threads() == 3
    finally:
        import torch

        torch.set_num_threads(1)
        for proc in others:
            proc.kill()
            proc.wait(10)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: every share is one thread, nothing to resize")
def test_a_worker_that_joins_mid_training_shrinks_the_share_from_the_next_epoch(
        host_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmarks/shared_cores.py: N `attnas train` processes started together each sized themselves before the
    others registered (2 threads + 1 on 2 cores, 0.69x one alone); sized again after each epoch, 0.92x."""
    import torch

    for name in ("OMP_NUM_THREADS", "ATTNAS_THREADS", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(name, raising=False)
    cpus = len(os.sched_getaffinity(0))
    decisions = []
    hook = host.resizing(lambda stats: decisions.append(stats) or stats != "last")
    joined = None
    try:
        assert host.size_threads() == cpus  # alone
        joined = _worker({**os.environ})
        assert torch.get_num_threads() == cpus  # nothing changes mid-epoch
        assert hook("epoch 1") is True and torch.get_num_threads() == cpus // 2
        joined.kill()
        joined.wait(10)
        assert hook("last") is False and torch.get_num_threads() == cpus  # the caller's decision passes through
        assert decisions == ["epoch 1", "last"]
    finally:
        torch.set_num_threads(1)
        if joined is not None:
            joined.kill()
            joined.wait(10)
