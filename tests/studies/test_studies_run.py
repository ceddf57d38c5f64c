"""No wasted training: over-budget specs are recorded infeasible without training; repeats are never retrained
and take no slot; a trial whose artifacts cannot be stored keeps its result; retries start fresh."""

from __future__ import annotations

import sys
import time

import optuna
import pytest
from optuna.trial import TrialState

from studies.config import read_file
from studies.liveness import HEARTBEAT_ATTR
from studies.records import objectives_of, pareto_front, records
from studies.worker import start, work


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch) -> None:
    """Workers write their run folders under ./.attnas/<study>/: keep them in the test's folder."""
    monkeypatch.chdir(tmp_path)


def _count_training(monkeypatch: pytest.MonkeyPatch, *, forbid: bool) -> list[str]:
    """Replace proxy_train wherever it is imported (and in every worker Context made from now on); record (or
    refuse) every training call."""
    from dataclasses import replace

    import objectives.scoring  # noqa: F401  (make sure the modules that hold proxy_train are loaded)
    import studies.worker
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
    made = studies.worker.context
    monkeypatch.setattr(studies.worker, "context", lambda config: replace(made(config), train=fake))
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
        record = t.user_attrs["attnas"]
        assert t.values[0] == 0.0 and t.values[1] > 0.01 and t.values[1] == record["gflops"]
        assert record["outcome"] == "over_budget" and record["top1"] is None and record["epochs"] == 0
        assert t.system_attrs["constraints:gflops_budget"] == pytest.approx(t.values[1] - 0.01)
        assert t.system_attrs["constraints"] == [-1.0, pytest.approx(t.values[1] - 0.01)]  # sorted by key
    assert pareto_front(records(study), objectives_of(study)) == [] and study.metric_names == ["top1", "gflops"]


def test_repeated_spec_is_reused_not_retrained_and_takes_no_slot(tiny_study, monkeypatch) -> None:
    calls = _count_training(monkeypatch, forbid=False)
    config = read_file(tiny_study(trials=3, kinds='["none"]'))  # a space of exactly one spec
    ctx, study = start(config)
    stats = work(ctx, study)
    trials = study.get_trials()
    assert len(calls) == 1
    # trial 0 trained; trial 1 proposed the same spec: recorded for the sampler, no slot; the space is exhausted
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.WAITING]
    first, copy = trials[0], trials[1]
    assert first.user_attrs["attnas"]["outcome"] == "trained" and copy.user_attrs["attnas"]["outcome"] == "reused"
    assert copy.values == first.values and copy.user_attrs["attnas"]["reused_from"] == first.number
    assert copy.user_attrs["attnas"]["epochs"] == 0 and stats.reused == 1
    assert "holds 1 architecture" in (stats.exhausted or "")
    assert first.system_attrs["constraints:gflops_budget"] == -1.0  # no budget: feasible
    assert (first.system_attrs["constraints:front_eligible"], copy.system_attrs["constraints:front_eligible"]) == (
        -1.0, 1.0)
    assert first.user_attrs["attnas"]["curve"] == [first.values[0]]
    assert len(first.user_attrs["attnas"]["artifacts"]) == 2  # spec JSON + final checkpoint, as Optuna artifacts
    assert not list((config.folder / "runs").iterdir())  # the finished run's folder is gone (checkpoint stored)
    assert len(pareto_front(records(study), objectives_of(study))) <= 1


def test_a_trial_whose_artifacts_cannot_be_stored_keeps_its_result(tiny_study, monkeypatch) -> None:
    import studies.worker

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(studies.worker, "_upload", full_disk)
    config = read_file(tiny_study(trials=1, kinds='["none"]'))
    ctx, study = start(config)
    stats = work(ctx, study)
    (trial,) = study.get_trials()
    record = trial.user_attrs["attnas"]
    assert stats.failed == 0 and trial.state == TrialState.COMPLETE and record["outcome"] == "trained"
    assert trial.values[0] == record["top1"] and record["artifacts"] == []
    assert "could not store artifacts" in record["error"] and "No space left" in record["error"]
    assert len(list((config.folder / "runs").glob("*/checkpoint.pt"))) == 1  # the checkpoint is not lost


def test_two_workers_of_one_seed_propose_differently(tiny_study) -> None:
    """Worker 0 keeps the study seed (reproducible alone); worker 1 draws its own sequence."""
    from search_space import suggest
    from studies import storage as st

    config = read_file(tiny_study())
    assert st.worker_seed(0, 0) == 0 and st.worker_seed(None, 3) is None
    assert st.worker_seed(0, 1) not in (0, st.worker_seed(0, 2))

    def proposals(worker: int) -> list[str]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=st.make_sampler(config, worker))
        return [suggest(study.ask(), config.space).id for _ in range(6)]

    assert proposals(0) == proposals(0) and proposals(0) != proposals(1)


def test_resume_tops_up_without_retraining(tiny_study, monkeypatch) -> None:
    from studies.queue import reused

    path = tiny_study(trials=2)
    ctx, study = start(read_file(path), join=True)
    work(ctx, study)
    calls = _count_training(monkeypatch, forbid=False)
    ctx, study = start(read_file(path).with_overrides(trials=3), join=True)  # a restarted worker: number 1
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    work(ctx, study)
    slots = [t for t in study.get_trials(states=(TrialState.COMPLETE,)) if not reused(t)]
    assert len(slots) == 3 and len({t.user_attrs["attnas"]["spec_id"] for t in slots}) == 3 and len(calls) == 1


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
    record = trial.user_attrs["attnas"]
    assert (run["group"], run["name"], run["mode"]) == (config.name, record["spec_name"], "disabled")
    assert run["config"]["spec"] == record["spec"] and run["config"]["schedule"]["epochs"] == 2
    assert [e for e, _ in run["epochs"]] == [1, 2]  # 1-based, as trainer.EpochStats counts
    assert run["summary"]["top1"] == trial.values[0] and run["failed"] is False


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgresql"])
def test_a_worker_dying_right_after_its_claim_costs_a_retry(kind, tiny_study, tmp_path, monkeypatch, request) -> None:
    """The narrowest window: the trial is RUNNING but its worker died before its heartbeat thread beat once.

    The retry carries the params and nothing else of the dead trial: no heartbeat (which would make it look
    stale at once on journal storage) and no constraints (which would make set_constraint warn and keep them).
    """
    import warnings

    from studies import storage as st

    monkeypatch.setattr(st, "GRACE_S", 2)
    storage = {"sqlite": None, "journal": f"journal://{tmp_path}/s.log"}.get(kind) or request.getfixturevalue("pg_url")
    ctx, study = start(read_file(tiny_study(storage, trials=2)))
    try:
        dead = ctx.liveness.claim(study)  # and no heartbeat thread: the worker is gone
        ctx.config.objectives.constrain(dead, 1.0)
        assert dead is not None and ctx.liveness.recover(study, force=True) == []  # still within the grace period
        assert ctx.liveness.recover(study) == []  # at most once per heartbeat interval
        time.sleep(3.5)
        assert ctx.liveness.recover(study, force=True) == [dead.number]
        trials = study.get_trials()
        assert trials[dead.number].state == TrialState.FAIL
        (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
        assert retry.state == TrialState.WAITING and retry.system_attrs["retry_history"] == [dead.number]
        assert not any(k.startswith("constraints") or k == HEARTBEAT_ATTR for k in retry.system_attrs)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a retry takes fresh constraints without a UserWarning
            claimed = {t.number: t for t in (ctx.liveness.claim(study), ctx.liveness.claim(study)) if t}
            ctx.config.objectives.constrain(claimed[retry.number], 1.0)
    finally:
        if kind == "postgresql":
            optuna.delete_study(study_name=study.study_name, storage=ctx.storage)


def test_seeds_k_averages_k_runs_and_the_front_gets_their_error(tiny_study, monkeypatch) -> None:
    """`seeds = 2` in [schedule]: two runs (seeds 0 and 1) per architecture, the record holds their mean and
    each seed's top-1, and `attnas front`'s noise uses the seeds' standard error instead of the binomial one."""
    from studies.fidelity import front_noise

    calls = _count_training(monkeypatch, forbid=False)
    path = tiny_study(trials=2, epochs=1)
    path.write_text(path.read_text().replace("batch_size = 32", "batch_size = 32\nseeds = 2"))
    config = read_file(path)
    assert config.schedule.seeds == 2
    ctx, study = start(config)
    assert work(ctx, study).failed == 0
    trained = [r for r in records(study) if r.status.value == "trained"]
    assert trained and len(calls) == 2 * len(trained)
    for r in trained:
        assert len(r.seeds) == 2 and r.top1 == pytest.approx(sum(r.seeds) / 2)
    noise = front_noise(pareto_front(records(study), objectives_of(study)), 40)
    assert noise["source"] == "seeds"
    assert not list((ctx.runs).glob("*/*")), "every seed's run folder is cleaned up once stored"
