"""Every path that fails a trial records why, and `attnas status` says it (never "no error recorded").

A trial whose worker stopped beating is failed by another worker, which stores the reason (when the trial last
beat, on which host) in the study (`liveness.note_failure`), since a FAIL trial's own attrs are read-only. A
trial whose whole record does not fit on a full disk is failed with its reason alone, in one append.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState

from studies import liveness
from studies import storage as st
from studies.queue import RECORD
from studies.worker import _fail


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_trial_whose_worker_stopped_beating_says_so_and_names_its_retry(kind: str, tmp_path: Path,
                                                                          monkeypatch, attnas) -> None:
    monkeypatch.setattr(st, "GRACE_S", 1)  # read when the storage is opened (SQL) and when trials are judged
    url = str(tmp_path / ("s.log" if kind == "journal" else "s.db"))
    info = st.parse(url)
    storage = st.open_storage(info)
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    study.add_trial(optuna.trial.create_trial(state=TrialState.WAITING))
    alive = liveness.for_storage(info, storage)
    trial = alive.claim(study)  # its first beat; nothing beats it after this: its worker "died"
    assert trial is not None
    trial.set_user_attr(RECORD, {"spec_name": "r18", "error": None, "worker": {"host": "node7", "pid": 42}})
    deadline = time.monotonic() + 60
    while not (failed := alive.recover(study, force=True)):  # waits on the storage: stale once the grace passed
        assert time.monotonic() < deadline, "the trial never went stale"
        time.sleep(0.2)
    assert failed == [0]

    done = attnas("status", "--storage", url, "--study", "s")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "no error recorded" not in text
    when = "last beat" if kind == "journal" else "no beat for over 1 s"
    assert f"trial 0 failed: its worker's heartbeat stopped ({when}" in text, text
    assert "on node7:42; grace 1 s)" in text and "retried as trial 1" in text, text


def test_a_trial_whose_record_does_not_fit_on_a_full_disk_is_failed_with_its_reason(tmpfs, attnas) -> None:
    """The disk fills (checkpoints next to the journal): the failed trial's record, with its learning curve, does
    not fit, but its reason does. Before, the FAIL landed without it: `attnas status` said "no error recorded"."""
    disk = tmpfs("disk", "size=256k")
    path = disk / "study.log"
    storage = st.open_storage(st.parse(str(path)))
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    trial = study.ask()
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    filler.write_bytes(b"\0" * max(0, free - 4096))  # one page left (and the journal's own last page)
    record = {"spec_name": "r18", "curve": [0.123456789] * 3000, "error": None}  # ~40 KB: does not fit
    message = "trial 0: CheckpointError: cannot write runs/ab/checkpoint.pt: no space left on the device"

    _fail(SimpleNamespace(storage=storage), study, trial, record, message, requeue=False)

    done = attnas("status", "--storage", str(path), "--study", "s")
    assert done.returncode == 0, done.stderr
    assert f"trial 0 failed: {message}" in " ".join(done.stdout.split()), done.stdout
    filler.unlink()
