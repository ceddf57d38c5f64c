"""No wasted training: over-budget specs are recorded infeasible without training; repeats are copied."""

from __future__ import annotations

import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from studies.config import read_file
from studies.results import front_rows
from studies.run import start, work


def _count_training(monkeypatch: pytest.MonkeyPatch, *, forbid: bool) -> list[str]:
    """Replace proxy_train wherever it is imported; record (or refuse) every training call."""
    import objectives.scoring  # noqa: F401  (make sure the modules that hold proxy_train are loaded)
    import trainer

    real = trainer.proxy_train
    calls: list[str] = []

    def fake(spec, *args, **kwargs):
        calls.append(spec.id)
        if forbid:
            raise AssertionError(f"proxy_train called for {spec.name}")
        return real(spec, *args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("trainer", "objectives") and getattr(module, "proxy_train", None) is real:
            monkeypatch.setattr(module, "proxy_train", fake)
    return calls


def test_over_budget_is_recorded_infeasible_and_never_trained(tiny_study, monkeypatch) -> None:
    calls = _count_training(monkeypatch, forbid=True)
    config = read_file(tiny_study(trials=3, max_gflops=0.01))
    ctx, study = start(config)
    stats = work(ctx, study)
    assert calls == [] and stats.failed == 0
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.values[0] == 0.0 and t.values[1] > 0.01
        assert t.user_attrs["scores"]["status"] == "over_budget"
        assert t.system_attrs["constraints:gflops_budget"] == pytest.approx(t.values[1] - 0.01)
        assert t.system_attrs["constraints"] == [pytest.approx(t.values[1] - 0.01)]
    assert front_rows(study) == []


def test_repeated_spec_is_copied_not_retrained(tiny_study, monkeypatch) -> None:
    calls = _count_training(monkeypatch, forbid=False)
    config = read_file(tiny_study(trials=3, kinds='["none"]'))  # a space of exactly one spec
    ctx, study = start(config)
    work(ctx, study)
    trials = study.get_trials()
    assert len(calls) == 1
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    first, *others = trials
    assert all(t.values == first.values and t.user_attrs["reused_from"] == first.number for t in others)
    assert all(t.system_attrs["constraints:gflops_budget"] == -1.0 for t in trials)  # no budget: feasible
    assert len(first.user_attrs["artifacts"]) == 2  # spec JSON + final checkpoint, as Optuna artifacts
    assert len(front_rows(study)) == 1


def test_resume_tops_up_without_retraining(tiny_study, monkeypatch) -> None:
    path = tiny_study(trials=2)
    ctx, study = start(read_file(path))
    work(ctx, study)
    calls = _count_training(monkeypatch, forbid=False)
    ctx, study = start(read_file(path).with_overrides(trials=3))
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    work(ctx, study)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3 and len(calls) <= 1


def test_each_trained_trial_is_tracked_with_its_curves(tiny_study, monkeypatch) -> None:
    import studies.tracking

    runs: list[dict] = []

    class Run:
        def __init__(self, **kwargs) -> None:
            self.record = {**kwargs, "epochs": [], "summary": None}
            runs.append(self.record)

        def log_epoch(self, epoch: int, metrics: dict) -> None:
            self.record["epochs"].append((epoch, metrics))

        def finish(self, summary: dict, failed: bool = False) -> None:
            self.record["summary"], self.record["failed"] = summary, failed

    monkeypatch.setattr(studies.tracking, "open_run", lambda **kw: Run(**kw))
    path = tiny_study(trials=2, epochs=2, kinds='["none"]')
    config = read_file(path)
    ctx, study = start(config.with_overrides(trials=1))
    work(ctx, study)
    (run,) = runs
    trial = study.trials[0]
    assert (run["group"], run["name"], run["mode"]) == (config.name, trial.user_attrs["spec_name"], "disabled")
    assert run["config"]["spec"] == trial.user_attrs["spec"] and run["config"]["schedule"]["epochs"] == 2
    assert [e for e, _ in run["epochs"]] == [1, 2]  # 1-based, as trainer.EpochStats counts
    assert run["summary"]["top1"] == trial.values[0] and run["failed"] is False


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_a_worker_dying_right_after_its_claim_costs_a_retry(kind, tiny_study, tmp_path, monkeypatch, request) -> None:
    """The narrowest window: the trial is RUNNING but its worker died before its heartbeat thread beat once."""
    from studies import storage as st
    from studies.run import claim, recover_stale

    monkeypatch.setattr(st, "GRACE_S", 2)
    storage = {"sqlite": None, "journal": f"journal://{tmp_path}/s.log"}.get(kind) or request.getfixturevalue("pg_url")
    ctx, study = start(read_file(tiny_study(storage, trials=2)))
    try:
        dead = claim(ctx, study)  # and no heartbeat thread: the worker is gone
        assert dead is not None and recover_stale(ctx, study) == []  # still within the grace period
        time.sleep(3.5)
        assert recover_stale(ctx, study) == [dead.number]
        trials = study.get_trials()
        assert trials[dead.number].state == TrialState.FAIL
        retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
        assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    finally:
        if kind == "postgresql":
            optuna.delete_study(study_name=study.study_name, storage=ctx.storage)
