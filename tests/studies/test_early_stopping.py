"""MO-ASHA in the worker: three real `attnas worker` processes on PostgreSQL stop some trials at a rung.

What is checked is the acceptance of issue 10: the study completes its N slots; every trial is trained to the
end or stopped at a rung (its record says where); no stopped trial is on the front (records, Optuna's
best_trials); every stored rung decision agrees with a recomputation from the stored rung records."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from studies import records as rec
from studies import storage as st
from studies.queue import reused
from studies.stopping import Rungs, disagreements, rung_records, stopped

EPOCHS, ETA, TRIALS = 4, 2, 9  # rungs at epochs 1 and 2; with eta 2 about half of those judged stop


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers write their run folders under ./.attnas/<study>/: keep them in tmp_path."""
    monkeypatch.chdir(tmp_path)


def _moasha_study(tiny_study, url: str, name: str) -> Path:
    path = tiny_study(url, trials=TRIALS, epochs=EPOCHS, name=name, kinds='["none", "se", "gc"]')
    path.write_text(path.read_text() + f'\n[early_stopping]\nkind = "moasha"\neta = {ETA}\nmin_epochs = 1\n')
    return path


@pytest.fixture
def pg_study(pg_url: str, tiny_study):
    name = f"es-{uuid.uuid4().hex[:8]}"
    yield _moasha_study(tiny_study, pg_url, name), name
    with contextlib.suppress(Exception):
        optuna.delete_study(study_name=name, storage=st.open_storage(st.parse(pg_url)))


@pytest.mark.slow
def test_three_moasha_workers_on_postgresql(pg_url: str, pg_study, attnas_popen) -> None:
    path, name = pg_study
    workers = [attnas_popen("worker", str(path), "--no-wandb", ATTNAS_HEARTBEAT_S="1", ATTNAS_GRACE_S="4")
               for _ in range(3)]
    for w in workers:
        _, stderr = w.communicate(timeout=180)
        assert w.returncode == 0, stderr
    study = optuna.load_study(study_name=name, storage=st.open_storage(st.parse(pg_url)))
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL)]
    slots = [t for t in trials if not reused(t)]
    assert len(slots) == TRIALS

    records = rec.records(study)
    rungs = set(Rungs(EPOCHS, ETA, 1))
    stored = rung_records(study)
    stops = stopped(stored)
    by_number = {r.number: r for r in records}
    done = {r.number for r in records if r.status == rec.Status.TRAINED}
    halted = {r.number for r in records if r.status == rec.Status.STOPPED}
    assert done | halted == {t.number for t in slots}  # every slot trained to the end or stopped
    assert halted, "eta 2 on 9 trials stops some at a rung"
    assert done, "and lets some finish"
    for number in done:
        assert by_number[number].epochs == EPOCHS
        assert len(by_number[number].curve) == EPOCHS
    for number in halted:
        r = by_number[number]
        assert number in stops and r.epochs == stops[number].epoch in rungs  # stopped at the rung that said stop
        assert len(r.curve) == r.epochs and r.top1 == pytest.approx(stops[number].top1) == r.curve[-1]
    assert set(stops) == halted  # nothing was stopped without being recorded as stopped, and vice versa

    front = {r.number for r in rec.pareto_front(records)}
    assert front and not front & halted
    assert not {t.number for t in study.best_trials} & halted  # Optuna (and the dashboard) agree
    assert all(t.system_attrs["constraints:front_eligible"] == 1.0 for t in trials if t.number in halted)

    assert stored and disagreements(stored) == []
    assert {(r.epoch, r.trial) for r in stored} >= {(1, n) for n in done | halted}  # every slot met rung 1


def test_config_without_early_stopping_never_writes_rungs(tiny_study, attnas) -> None:
    """kind = "none" (the default): no rung records, every trial trained to the end."""
    path = tiny_study(trials=2, epochs=2)
    result = attnas("search", str(path), "--no-wandb")
    assert result.returncode == 0, result.stderr
    url = f"sqlite:///{path.with_suffix('.db')}"
    study = optuna.load_study(study_name=path.stem, storage=url)
    assert rung_records(study) == []
    assert {r.status for r in rec.records(study) if r.status != rec.Status.REUSED} == {rec.Status.TRAINED}


def test_a_stopped_run_is_not_trained_on_when_rerun(tmp_path: Path, attnas_cache: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """proxy_train stops when on_epoch returns False, and a rerun from the checkpoint returns the stopped result."""
    import trainer
    from search_space import ArchSpec

    monkeypatch.setenv("ATTNAS_CACHE", str(attnas_cache))
    spec = ArchSpec.from_dict({"backbone": "resnet18", "width": 1.0,
                               "stages": {s: {"kind": "none"} for s in ("c2", "c3", "c4", "c5")}})
    subset = trainer.SubsetSpec(root=trainer.dataset_root("digits"), train_per_class=6, holdout_per_class=2,
                                resolution=16)
    schedule = trainer.Schedule(epochs=4, batch_size=32, width_mult=0.125, amp=False, channels_last=False)
    seen: list[int] = []
    first = trainer.proxy_train(spec, subset, schedule, on_epoch=lambda s: seen.append(s.epoch) or s.epoch < 2,
                                checkpoint_dir=tmp_path)
    assert (first.status, first.epochs, seen) == ("stopped", 2, [1, 2])
    assert first.top1 == first.history[-1].top1
    again = trainer.proxy_train(spec, subset, schedule, on_epoch=lambda s: pytest.fail("trained on"),
                                checkpoint_dir=tmp_path)
    assert (again.status, again.epochs, again.top1) == ("stopped", 2, first.top1)


@pytest.mark.slow
def test_a_kill_between_checkpoint_and_rung_decision_is_decided_on_resume(
        tmp_path: Path, attnas_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed after epoch 2's checkpoint but before its callback ran (its rung record unwritten):
    the rerun calls on_epoch for epoch 2 first, so the rung is judged, and a stop there holds."""
    import trainer
    from search_space import ArchSpec

    monkeypatch.setenv("ATTNAS_CACHE", str(attnas_cache))
    spec = ArchSpec.from_dict({"backbone": "resnet18",
                               "stages": {s: {"kind": "none"} for s in ("c2", "c3", "c4", "c5")}})
    subset = trainer.SubsetSpec(root=trainer.dataset_root("digits"), train_per_class=6, holdout_per_class=2,
                                resolution=16)
    schedule = trainer.Schedule(epochs=4, batch_size=32, width_mult=0.125, amp=False, channels_last=False)

    def killed_at_2(stats):
        if stats.epoch == 2:
            raise KeyboardInterrupt  # stands for SIGKILL: the checkpoint of epoch 2 is on disk, nothing else
    with pytest.raises(KeyboardInterrupt):
        trainer.proxy_train(spec, subset, schedule, on_epoch=killed_at_2, checkpoint_dir=tmp_path)
    seen: list[int] = []
    again = trainer.proxy_train(spec, subset, schedule, on_epoch=lambda s: seen.append(s.epoch) or s.epoch < 2,
                                checkpoint_dir=tmp_path)
    assert (again.status, again.epochs, again.resumed_at, seen) == ("stopped", 2, 2, [2])
    assert again.top1 == again.history[-1].top1
