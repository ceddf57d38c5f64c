"""Shared-trunk proxies with real `attnas worker` processes (PostgreSQL and a journal file): one trunk per width
for the whole study, built by one worker while the other waits; a builder SIGKILLed mid-trunk costs a retry of
its trial and the epoch it was in, never a second trunk; a user's trunk that does not fit is one line."""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from procs import checkpoint_epoch, finish

from studies import storage as st
from studies.queue import reused
from studies.trunks import study_trunks, system_attrs

FAST_HEARTBEAT = {"ATTNAS_HEARTBEAT_S": "1", "ATTNAS_GRACE_S": "4"}


@pytest.fixture(params=["postgresql", "journal"])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "journal":
        return f"journal://{tmp_path}/study.log"
    return request.getfixturevalue("pg_url")


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers write their run and trunk folders under ./.attnas/<study>/: keep them in tmp_path."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cleanup():
    made: list[tuple[str, str]] = []
    yield made
    for url, name in made:
        if url.startswith("postgresql"):
            with contextlib.suppress(Exception):
                optuna.delete_study(study_name=name, storage=st.open_storage(st.parse(url)))


def trunk_study(tiny_study, url: str, name: str, *, trunk_epochs: int, images: int = 12, trials: int = 2,
                proxy: str | None = None) -> Path:
    path = tiny_study(url, trials=trials, name=name, train_per_class=images)
    path.write_text(path.read_text() + (proxy or f'\n[proxy]\nstart = "trunk"\ntrunk_epochs = {trunk_epochs}\n'))
    return path


def _open(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=st.open_storage(st.parse(url)))


def _check(study: optuna.Study, n: int, trunk_epochs: int) -> list[optuna.trial.FrozenTrial]:
    """N slots completed; one trunk per width the trained trials have (one attr and one study artifact each),
    every trained trial started from its width's trunk."""
    trials = study.get_trials()
    slots = [t for t in trials if t.state == TrialState.COMPLETE and not reused(t)]
    assert len(slots) == n
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    infos = study_trunks(study)
    trained = [t.user_attrs["attnas"] for t in slots if t.user_attrs["attnas"]["outcome"] == "trained"]
    assert trained and sorted(t.width for t in infos) == sorted({r["spec"]["width"] for r in trained})
    by_width = {t.width: t.key for t in infos}
    assert all(r["trunk"] == by_width[r["spec"]["width"]] for r in trained)
    assert all(t.epochs == trunk_epochs for t in infos)
    assert sorted(k for k in system_attrs(study) if k.startswith("artifacts:")) == sorted(
        f"artifacts:{t.artifact}" for t in infos)
    return trials


@pytest.mark.slow
def test_two_workers_build_one_trunk_per_width_and_start_every_trial_from_it(storage_url, tiny_study, cleanup,
                                                                             attnas, attnas_popen, tmp_path) -> None:
    name = f"trunk-{uuid.uuid4().hex[:8]}"
    path = trunk_study(tiny_study, storage_url, name, trunk_epochs=2, trials=3)
    one = 'backbones = ["resnet18"]'
    path.write_text(path.read_text().replace(one, one + "\nwidths = [1.0, 0.5]"))  # two widths: two trunks
    cleanup.append((storage_url, name))
    finish(*[attnas_popen("worker", str(path), "--no-wandb", **FAST_HEARTBEAT) for _ in range(2)], timeout=240)
    study = _open(storage_url, name)
    _check(study, 3, trunk_epochs=2)
    infos = study_trunks(study)
    assert all(t.resumed_at == 0 for t in infos) and not list((tmp_path / ".attnas" / name / "trunks").iterdir())
    status = attnas("status", str(path), COLUMNS="300")
    assert status.returncode == 0, status.stderr
    lines = sorted(x for x in status.stdout.splitlines() if x.startswith("trunk "))
    assert len(lines) == len(infos), lines
    for line, trunk in zip(lines, sorted(infos, key=lambda t: t.key), strict=True):
        assert trunk.key in line and "2 epochs" in line and "epochs each" in line, line


@pytest.mark.slow
def test_a_builder_killed_mid_trunk_costs_a_retry_and_no_second_trunk(storage_url, tiny_study, cleanup,
                                                                      attnas_popen, tmp_path) -> None:
    name = f"trunk-kill-{uuid.uuid4().hex[:8]}"
    path = trunk_study(tiny_study, storage_url, name, trunk_epochs=3, images=48)  # ~1 s trunk epochs
    cleanup.append((storage_url, name))
    folder = tmp_path / ".attnas" / name / "trunks"
    builder = attnas_popen("worker", str(path), "--no-wandb", **FAST_HEARTBEAT)
    deadline = time.time() + 120
    while checkpoint_epoch(folder) < 1 and time.time() < deadline and builder.poll() is None:
        time.sleep(0.02)
    builder.send_signal(signal.SIGKILL)
    builder.wait(10)
    killed_at = checkpoint_epoch(folder)
    assert 1 <= killed_at < 3, "the kill did not land while the trunk was being built"
    running = _open(storage_url, name).get_trials(states=(TrialState.RUNNING,))
    assert len(running) == 1  # the builder's trial, left behind

    finish(*[attnas_popen("worker", str(path), "--no-wandb", **FAST_HEARTBEAT) for _ in range(2)], timeout=240)
    study = _open(storage_url, name)
    trials = _check(study, 2, trunk_epochs=3)
    [trunk] = study_trunks(study)
    assert trunk.resumed_at == killed_at  # resumed from the dead builder's checkpoint: <= 3 + 1 epochs in all
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [running[0].number]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == running[0].number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE


def test_a_user_trunk_that_does_not_fit_is_one_line(tiny_study, attnas, tmp_path) -> None:
    from search_space import ArchSpec, build_model

    wrong = build_model(ArchSpec("resnet18", 1.0), 10, width_mult=0.25, input_size=16)  # the study is 0.125
    torch.save(wrong.state_dict(), tmp_path / "wide.pt")
    name = f"trunk-user-{uuid.uuid4().hex[:8]}"
    proxy = f'\n[proxy]\nstart = "trunk"\ntrunk = "{tmp_path / "wide.pt"}"\n'
    path = trunk_study(tiny_study, f"sqlite:///{tmp_path}/u.db", name, trunk_epochs=1, proxy=proxy)
    done = attnas("create", str(path))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "wide.pt" in lines[0] and "shape(s) differ" in lines[0], done.stderr
    assert not (tmp_path / "u.db").exists()  # refused before the study was touched
