"""Journal files that survive torn writes: healed on open, repaired by `attnas repair`, appends never torn.

Real files and real processes: a torn tail written the way a killed writer leaves it, a record glued onto it
by plain Optuna (what happened before attnas healed), a full tmpfs for ENOSPC.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from studies import journal
from studies import storage as st
from studies.config import StudyError

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parents[2]

#: A worker-like process: opens the journal the way attnas does, runs one more trial, prints what it saw.
WORKER = """
import sys, optuna
from studies import storage as st
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name=sys.argv[2], storage=st.open_storage(st.parse(sys.argv[1])))
trial = study.ask()
trial.suggest_float("x", 0, 1)
study.tell(trial, 42.0)
print(len(study.trials))
"""


def plain(path: Path) -> JournalStorage:
    """Optuna's own storage over the file, nothing of attnas in the way."""
    return JournalStorage(JournalFileBackend(str(path)))


def completed(path: Path, name: str = "s") -> list[float]:
    study = optuna.load_study(study_name=name, storage=plain(path))
    return [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def journal_with_trials(path: Path, n: int, name: str = "s") -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=st.open_storage(st.parse(str(path))))
    for i in range(n):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, float(i))
    return study


def run_worker(path: Path, name: str = "s") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WORKER, str(path), name], capture_output=True, text=True,
                          cwd=REPO, timeout=60)


def test_optuna_file_format_and_lock_are_the_ones_attnas_writes_with(tmp_path: Path) -> None:
    """Pins what SafeJournalBackend relies on: Optuna's line format and its default lock file."""
    logs = [{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}, {"op_code": 2, "a": [1, 2]}]
    theirs, ours = tmp_path / "theirs.log", tmp_path / "ours.log"
    JournalFileBackend(str(theirs)).append_logs(logs)
    journal.SafeJournalBackend(ours).append_logs(logs)
    assert ours.read_bytes() == theirs.read_bytes()

    lock = journal.lock_for(theirs)
    size = theirs.stat().st_size
    writer = threading.Thread(target=JournalFileBackend(str(theirs)).append_logs, args=(logs,))
    with journal.locked(lock):
        writer.start()
        time.sleep(0.5)
        assert theirs.stat().st_size == size, "Optuna's default backend no longer takes attnas' journal lock"
    writer.join(10)
    assert theirs.stat().st_size > size


@pytest.mark.parametrize("taken_again", [True, False], ids=["taken-again", "left-free"])
def test_a_holder_whose_lock_was_broken_leaves_the_new_lock_alone(tmp_path: Path, capsys, taken_again: bool) -> None:
    """A holder stopped past the lock grace wakes without its lock: Optuna broke it (unlinked the symlink) and
    another process may hold a new one. Leaving the block must neither delete that lock nor raise (Optuna's
    release does one or the other); it warns in one line."""
    path = tmp_path / "study.log"
    journal_with_trials(path, 1)
    ours, theirs = journal.lock_for(path), journal.lock_for(path)
    lock_file = Path(f"{path}.lock")
    with journal.locked(ours):
        os.unlink(lock_file)  # what a waiting process does once the grace is over
        if taken_again:
            theirs.acquire()
    assert lock_file.is_symlink() == taken_again  # the new holder keeps its lock
    warning = capsys.readouterr().err
    assert "was broken while this process held it" in warning and str(lock_file) in warning, warning
    if taken_again:
        theirs.release()
    with journal.locked(ours):  # the lock works as before, and a normal release says nothing
        assert lock_file.is_symlink()
    assert not lock_file.exists() and capsys.readouterr().err == ""


def test_torn_tail_is_healed_on_open_and_the_study_continues(tmp_path: Path, caplog) -> None:
    path = tmp_path / "study.log"
    journal_with_trials(path, 3)
    clean = path.read_bytes()
    last = clean.rstrip(b"\n").rsplit(b"\n", 1)[1]
    torn = last[: len(last) // 2]  # what a writer killed (or cut by a full disk) mid-line leaves
    with open(path, "ab") as f:
        f.write(torn)

    worker = run_worker(path)

    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.split() == ["4"]
    notes = [line for line in worker.stderr.splitlines() if line.strip()]
    assert len(notes) == 1 and "moved an unreadable last line" in notes[0] and str(path) in notes[0], notes
    assert completed(path) == [0.0, 1.0, 2.0, 42.0]
    assert path.with_name("study.log.rejected").read_bytes() == torn + b"\n"
    (backup,) = tmp_path.glob("study.log.bak-*")
    assert backup.read_bytes() == clean + torn
    with caplog.at_level("WARNING", logger="studies.journal"):
        st.open_storage(st.parse(str(path)))
    assert caplog.records == []  # healed once: the next open has nothing to say


def test_a_record_glued_onto_a_torn_tail_is_kept(tmp_path: Path) -> None:
    """Plain Optuna appends onto a torn line; the glued record is the last line: heal keeps it."""
    path = tmp_path / "study.log"
    study = journal_with_trials(path, 2)
    with open(path, "ab") as f:
        f.write(b'{"op_code":8,"worker_id":"dead","tri')
    plain(path).set_study_user_attr(study._study_id, "after", "glued")

    storage = st.open_storage(st.parse(str(path)))

    assert optuna.load_study(study_name="s", storage=storage).user_attrs == {"after": "glued"}
    assert path.with_name("study.log.rejected").read_bytes() == b'{"op_code":8,"worker_id":"dead","tri\n'
    assert completed(path) == [0.0, 1.0]


def test_garbage_inside_is_named_then_attnas_repair_recovers_every_complete_trial(tmp_path: Path, attnas) -> None:
    path = tmp_path / "study.log"
    journal_with_trials(path, 4)
    lines = path.read_bytes().splitlines(keepends=True)
    creates = [n for n, line in enumerate(lines) if json.loads(line)["op_code"] == 4]  # CREATE_TRIAL records
    bad = creates[2] + 1  # 1-based: the case, a torn line with the next record appended onto it
    torn = b'{"op_code":6,"worker_id":"x","trial_id":1,"sta'
    lines[bad - 1] = torn + lines[bad - 1]
    path.write_bytes(b"".join(lines))
    original = path.read_bytes()

    with pytest.raises(StudyError) as exc:
        st.open_storage(st.parse(f"journal://{path}"))
    message = str(exc.value)
    assert "\n" not in message and str(path) in message and f"line {bad} " in message
    assert f"attnas repair {path}" in message
    status = attnas("status", "--storage", str(path), "--study", "s")
    assert status.returncode == 1 and f"line {bad} " in status.stderr and "Traceback" not in status.stderr
    assert len(status.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == original  # naming the problem changed nothing

    repaired = attnas("repair", str(path))

    assert repaired.returncode == 0, repaired.stderr
    assert f"moved line(s) {bad} " in repaired.stdout and "1 glued records recovered" in repaired.stdout
    assert completed(path) == [0.0, 1.0, 2.0, 3.0]
    (backup,) = tmp_path.glob("study.log.bak-*")
    assert backup.read_bytes() == original
    assert path.with_name("study.log.rejected").read_bytes() == torn + b"\n"
    assert len(optuna.load_study(study_name="s", storage=st.open_storage(st.parse(str(path)))).trials) == 4
    assert journal.repair(path).rejected_lines == ()


def test_repair_moves_a_foreign_line_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "study.log"
    journal_with_trials(path, 3)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:4], b"\x00\x00 not a record\n", b"[1, 2]\n", *lines[4:]]))

    report = journal.repair(path)

    assert report.rejected_lines == (5, 6) and report.kept == len(lines) and report.salvaged == 0
    assert report.rejected.read_bytes() == b"\x00\x00 not a record\n[1, 2]\n"
    assert completed(path) == [0.0, 1.0, 2.0]


def fill(disk: Path, leave: int) -> Path:
    """Fill the disk up to `leave` bytes free; returns the filler file."""
    filler = disk / "filler"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def test_enospc_during_an_append_leaves_a_readable_journal(tmpfs) -> None:
    disk = tmpfs("disk", "size=256k")
    path = disk / "study.log"
    study = journal_with_trials(path, 2)
    before = path.read_bytes()
    filler = fill(disk, leave=8192)

    with pytest.raises(journal.JournalWriteError) as exc:
        study.set_user_attr("big", "x" * 40_000)  # larger than the free space: the write stops part-way

    message = str(exc.value)
    assert "\n" not in message and str(path) in message and "disk full" in message
    assert path.read_bytes() == before
    assert completed(path) == [0.0, 1.0]
    filler.unlink()
    study.set_user_attr("big", "x" * 40_000)  # space again: the same study goes on
    assert optuna.load_study(study_name="s", storage=plain(path)).user_attrs["big"] == "x" * 40_000
    assert all(json.loads(line) for line in path.read_bytes().splitlines())


# -- AttnasJournalStorage.exclusive: several writes in one append, a read-check-write atomic across processes --
def counting_appends(storage: journal.AttnasJournalStorage, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of records in each append_logs call on `storage`'s backend from now on."""
    calls: list[int] = []
    real = storage._backend.append_logs

    def counted(logs: list) -> None:
        calls.append(len(logs))
        real(logs)

    monkeypatch.setattr(storage._backend, "append_logs", counted)
    return calls


def test_an_exclusive_block_is_one_append_that_plain_optuna_replays(tmp_path: Path, monkeypatch) -> None:
    """Attribute writes in the block are visible to reads inside it at once and reach the file together when
    it ends; a state write inside it goes out at once, after the attribute writes before it."""
    path = tmp_path / "study.log"
    storage = st.open_storage(st.parse(str(path)))
    assert isinstance(storage, journal.AttnasJournalStorage)
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    appends = counting_appends(storage, monkeypatch)
    size = path.stat().st_size

    with journal.exclusive(storage):
        storage.set_study_system_attr(study._study_id, "k", [1, 2])
        trial.storage.set_trial_system_attr(trial._trial_id, "a", 1.0)
        trial.set_user_attr("record", {"x": (1, 2)})
        assert storage.get_study_system_attrs(study._study_id)["k"] == [1, 2]
        seen = storage.get_trial(trial._trial_id)
        assert seen.system_attrs["a"] == 1.0 and seen.user_attrs["record"] == {"x": [1, 2]}  # as replayed
        assert path.stat().st_size == size and appends == []  # nothing written yet
    assert appends == [3]

    second = study.ask()
    with journal.exclusive(storage):
        second.set_user_attr("record", "final")
        study.tell(second, 1.0)
        assert appends == [3, 1, 2]  # the ask, then the record and the state together
    assert appends == [3, 1, 2]

    replayed = optuna.load_study(study_name="s", storage=plain(path))
    assert plain(path).get_study_system_attrs(study._study_id)["k"] == [1, 2]
    assert replayed.trials[0].system_attrs["a"] == 1.0 and replayed.trials[0].user_attrs["record"] == {"x": [1, 2]}
    assert replayed.trials[1].user_attrs["record"] == "final" and replayed.trials[1].value == 1.0
    assert [t.user_attrs for t in replayed.trials] == [t.user_attrs for t in study.get_trials()]


def test_a_read_check_write_in_exclusive_blocks_is_atomic_across_storages(tmp_path: Path) -> None:
    """Four storages on one file (as four workers) each claim a key only if nobody has: exactly one does."""
    path = tmp_path / "study.log"
    optuna.create_study(study_name="s", storage=st.open_storage(st.parse(str(path))))
    storages = [st.open_storage(st.parse(str(path))) for _ in range(4)]
    won: list[int] = []
    start = threading.Barrier(len(storages))

    def claim(i: int) -> None:
        storage = storages[i]
        start.wait()
        with storage.exclusive():
            if "owner" not in storage.get_study_system_attrs(0):
                time.sleep(0.05)  # a slow check: without the lock every storage would pass it
                storage.set_study_system_attr(0, "owner", i)
                won.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(storages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1
    assert plain(path).get_study_system_attrs(0)["owner"] == won[0]

    # the block holds Optuna's own journal lock: a plain Optuna append waits for it
    backend = JournalFileBackend(str(path))
    writer = threading.Thread(target=backend.append_logs, args=([{"op_code": 3, "worker_id": "w", "study_id": 0,
                                                                   "system_attr": {"late": 1}}],))
    with storages[0].exclusive():
        size = path.stat().st_size
        writer.start()
        time.sleep(0.5)
        assert path.stat().st_size == size
    writer.join(10)
    assert storages[0].get_study_system_attrs(0)["late"] == 1


def test_a_write_on_a_finished_trial_in_a_block_raises_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "study.log"
    storage = st.open_storage(st.parse(str(path)))
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    study.tell(trial, 1.0)  # e.g. failed as stale by another worker
    size = path.stat().st_size
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError), journal.exclusive(storage):
        trial.set_user_attr("late", 1)
    assert path.stat().st_size == size
    study.set_user_attr("after", 2)  # the storage carries on
    assert optuna.load_study(study_name="s", storage=plain(path)).user_attrs == {"after": 2}


def test_a_failed_block_append_leaves_memory_as_the_file(tmp_path: Path, monkeypatch) -> None:
    """ENOSPC on the block's append: nothing reaches the file, and the storage's view forgets the writes too."""
    path = tmp_path / "study.log"
    storage = st.open_storage(st.parse(str(path)))
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()

    def full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal, "_append", full)
    with pytest.raises(journal.JournalWriteError), journal.exclusive(storage):
        trial.set_user_attr("lost", 1)
        assert storage.get_trial(trial._trial_id).user_attrs == {"lost": 1}
    assert storage.get_trial(trial._trial_id).user_attrs == {}
    monkeypatch.undo()
    trial.set_user_attr("kept", 2)
    assert optuna.load_study(study_name="s", storage=plain(path)).trials[0].user_attrs == {"kept": 2}


def test_a_worker_trial_on_a_journal_costs_three_appends_beyond_its_params(tiny_study, tmp_path: Path,
                                                                            monkeypatch) -> None:
    """The claim (its first beat), the dedup entry with the constraints and first record, the final record
    with the tell; plus the artifact id of a trained trial (benchmarks/study_overhead.py)."""
    from dataclasses import replace

    import trainer
    from studies import worker
    from studies.config import read_file

    def stub_train(spec, subset, schedule, device="cpu", **_):
        return trainer.ProxyResult(0.5, 1.0, schedule.epochs, 0.0, 1e4, "ok", None, ())

    monkeypatch.chdir(tmp_path)
    ctx, study = worker.start(read_file(tiny_study(f"journal://{tmp_path}/w.log", trials=3)))
    ctx = replace(ctx, train=stub_train)
    appends = counting_appends(ctx.storage, monkeypatch)
    assert worker.work(ctx, study, poll_s=0.01).failed == 0
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    trained = [t for t in trials if t.user_attrs["attnas"]["outcome"] == "trained"]
    params = sum(len(t.params) for t in trials)
    assert trained and len(appends) <= params + 3 * len(trials) + len(trained)
    assert all("attnas:heartbeat" not in t.system_attrs for t in trials)  # trials shorter than a heartbeat
    assert all(t.system_attrs["constraints"] and t.user_attrs["attnas"]["spec_id"] for t in trials)
