"""MO-ASHA early stopping: rung schedule, the decision rule on cases with known answers, rung records in
storage, and N real processes recording into one study on a journal file and on PostgreSQL."""

from __future__ import annotations

import multiprocessing as mp
import random
import uuid
from dataclasses import replace

import optuna
import pytest

from studies.config import StudyError
from studies.stopping import (
    PREFIX,
    Point,
    Rungs,
    continues,
    decode_trials,
    disagreements,
    encode_trials,
    front_ranks,
    recompute,
    record_and_decide,
    rung_key,
    rung_records,
    stopped,
    survivors,
)
from studies.storage import open_storage, parse

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_in_memory() -> optuna.Study:
    return optuna.create_study(directions=["maximize", "minimize"])


# -- rungs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("epochs", "eta", "min_epochs", "levels"), [
    (4, 3, 1, (1, 3)),
    (27, 3, 1, (1, 3, 9)),
    (9, 3, 1, (1, 3)),  # the last epoch is the end of training, not a rung
    (10, 3, 1, (1, 3, 9)),
    (16, 2, 2, (2, 4, 8)),
    (1, 3, 1, ()),
    (2, 3, 3, ()),  # epochs < min_epochs: no rungs at all
    (3, 3, 3, ()),  # epochs == min_epochs: the only candidate is the end
    (0, 3, 1, ()),
])
def test_rung_epochs(epochs, eta, min_epochs, levels):
    rungs = Rungs(epochs=epochs, eta=eta, min_epochs=min_epochs)
    assert rungs.levels == levels and list(rungs) == list(levels) and len(rungs) == len(levels)
    assert all(e in rungs for e in levels) and epochs not in rungs


@pytest.mark.parametrize(("field", "value"), [("eta", 1), ("eta", 2.5), ("eta", True), ("min_epochs", 0)])
def test_bad_rung_settings_are_refused_naming_the_key(field, value):
    with pytest.raises(StudyError, match=rf"early_stopping\.{field}"):
        Rungs(epochs=4, **{field: value})


# -- the rule --------------------------------------------------------------------------------------------
def test_front_ranks_on_known_fronts():
    points = [Point(0, 0.9, 10.0), Point(1, 0.5, 1.0), Point(2, 0.8, 11.0), Point(3, 0.4, 2.0),
              Point(4, 0.9, 10.0), Point(5, 0.3, 12.0), Point(6, 0.9, 10.5)]
    # identical points (0, 4) share a front; 6 equals 0 on top-1 but costs more, so 0 dominates it;
    # 2 is behind 6 as well, and 5 behind 2
    assert front_ranks(points).tolist() == [0, 0, 2, 1, 0, 3, 1]


def test_a_trial_dominated_by_eta_squared_others_stops():
    others = [Point(i + 1, 0.80 + 0.01 * i, 2.0 + 0.1 * i) for i in range(9)]
    assert not continues(Point(0, 0.5, 5.0), others, eta=3)


def test_a_non_dominated_trial_continues():
    front = [Point(1, 0.9, 10.0), Point(2, 0.6, 2.0)]
    behind = [Point(3 + i, 0.5 - 0.02 * i, 11.0 + i) for i in range(7)]  # dominated by both front points
    assert continues(Point(0, 0.8, 5.0), front + behind, eta=3)  # n = 10, keep 4, the front has 3
    # among the same others, a point behind four better-and-cheaper ones (fronts 0, 0, 1, 2) stops
    assert not continues(Point(0, 0.45, 12.5), front + behind, eta=3)


def test_with_fewer_than_eta_others_a_trial_continues_whatever_it_scored():
    better = [Point(i + 1, 0.9, 1.0 + i) for i in range(3)]
    assert continues(Point(0, 0.1, 9.0), better[:2], eta=3)
    assert not continues(Point(0, 0.1, 9.0), better, eta=3)
    assert continues(Point(0, 0.1, 9.0), [], eta=3)


def test_a_cheap_trial_is_compared_only_with_trials_that_cost_no_more():
    expensive = [Point(i + 1, 0.9 - 0.01 * i, 10.0 + i) for i in range(9)]  # a chain: each dominates the next
    assert continues(Point(0, 0.3, 1.0), expensive, eta=3)  # cheapest at the rung: nothing can dominate it
    cheaper_and_better = [Point(i + 1, 0.35 + 0.01 * i, 0.5 + 0.01 * i) for i in range(9)]
    assert not continues(Point(0, 0.3, 1.0), cheaper_and_better, eta=3)


def test_the_tie_break_keeps_the_spread_out_point_of_the_last_front():
    accurate = Point(1, 0.90, 10.0)  # the front's most accurate point is always taken first
    behind = [Point(3, 0.4, 11.0), Point(4, 0.3, 12.0), Point(5, 0.2, 13.0)]
    # n = 6, keep 2; the front is {accurate, near it, far from it}: one place is left after `accurate`
    assert continues(Point(0, 0.50, 1.0), [accurate, Point(2, 0.89, 9.9), *behind], eta=3)
    assert not continues(Point(0, 0.89, 9.9), [accurate, Point(2, 0.50, 1.0), *behind], eta=3)


def test_survivors_are_whole_fronts_then_a_spread_subset():
    rng = random.Random(3)
    points = [Point(i, rng.random(), rng.uniform(1, 20)) for i in range(60)]
    ranks = front_ranks(points)
    for keep in (1, 7, 20, 60):
        chosen = survivors(points, keep)
        rest = set(range(60)) - set(chosen)
        assert len(chosen) == keep == len(set(chosen))
        assert not rest or max(ranks[chosen]) <= min(ranks[list(rest)])
    best = max(range(60), key=lambda i: (points[i].top1, -points[i].gflops))
    assert survivors(points, 1) == [best]  # ASHA's guarantee: the most accurate at the rung goes on


# -- storage ---------------------------------------------------------------------------------------------
def test_trial_sets_round_trip_as_bitmaps():
    for numbers in [set(), {0}, {7, 8}, set(range(0, 1000, 3)) | {4095}]:
        assert decode_trials(encode_trials(numbers)) == numbers
    assert len(encode_trials(range(1000))) <= 4 * (1000 // 8 + 3) // 3 + 4  # n/8 bytes, in base64


def test_records_are_stored_with_their_decisions_and_recompute_agrees():
    study = study_in_memory()
    rng = random.Random(0)
    returned = {}
    for trial in range(30):
        top1, gflops = rng.random(), rng.uniform(1, 10)
        returned[(1, trial)] = record_and_decide(study, trial, 1, top1, gflops)
        if returned[(1, trial)]:
            returned[(3, trial)] = record_and_decide(study, trial, 3, min(1.0, top1 + 0.1), gflops)
    records = rung_records(study)
    assert {(r.epoch, r.trial): r.continues for r in records} == returned
    assert recompute(records) == returned and disagreements(records) == []
    rung1 = [r for r in records if r.epoch == 1]
    assert [r.trial for r in rung1] == list(range(30))  # arrival order
    assert all(r.seen == frozenset(range(r.trial)) for r in rung1)  # one writer: it saw everything before it
    assert 0 < sum(returned.values()) < len(returned)  # the rule did stop some and keep some
    # replaying by arrival alone (no stored `seen`, as a benchmark builds records) gives the same answers
    assert recompute([replace(r, seen=None) for r in records]) == returned
    assert set(stopped(records)) == {t for (e, t), go in returned.items() if not go}
    assert all(r.epoch == e for (e, t), go in returned.items() if not go for r in [stopped(records)[t]])


def test_a_tampered_decision_is_found_by_the_recomputation():
    study = study_in_memory()
    for trial in range(6):
        record_and_decide(study, trial, 1, 0.9 - 0.1 * trial, 1.0 + trial)  # each worse and dearer
    records = rung_records(study)
    assert [r.continues for r in records] == [True, True, True, False, False, False]
    forged = [replace(r, continues=True) if r.trial == 5 else r for r in records]
    assert [r.trial for r in disagreements(forged)] == [5]


def test_a_second_call_for_the_same_rung_returns_the_stored_decision_and_writes_nothing():
    study = study_in_memory()
    for trial in range(3):
        record_and_decide(study, trial, 1, 0.9, 1.0 + trial)
    assert record_and_decide(study, 3, 1, 0.1, 9.0) is False
    before = study._storage.get_study_system_attrs(study._study_id)[rung_key(1, 3)]
    assert record_and_decide(study, 3, 1, 0.99, 0.5) is False  # a resumed trial replays its first decision
    assert study._storage.get_study_system_attrs(study._study_id)[rung_key(1, 3)] == before


def test_a_retried_architecture_does_not_compete_with_its_own_earlier_attempt():
    study = study_in_memory()
    for trial in range(3):
        record_and_decide(study, trial, 1, 0.9, 1.0 + trial, spec_id=f"s{trial}")
    # trial 3 is a retry of s2 (same network, same rung value): judged against s0 and s1 only (< eta: go on)
    assert record_and_decide(study, 3, 1, 0.9, 3.0, spec_id="s2") is True
    assert rung_records(study)[-1].seen == {0, 1}
    assert recompute(rung_records(study))[(1, 3)] is True


def test_bad_values_and_damaged_records_are_refused():
    study = study_in_memory()
    with pytest.raises(ValueError, match="diverged"):
        record_and_decide(study, 0, 1, float("nan"), 1.0)
    with pytest.raises(ValueError, match="GFLOPs"):
        record_and_decide(study, 0, 1, 0.5, -1.0)
    with pytest.raises(StudyError, match="eta"):
        record_and_decide(study, 0, 1, 0.5, 1.0, eta=1)
    assert rung_records(study) == []
    study._storage.set_study_system_attr(study._study_id, f"{PREFIX}1:0", {"top1": 0.5})
    with pytest.raises(StudyError, match=r"'attnas:rung:1:0' is not a rung record.*remove"):
        rung_records(study)


# -- N real processes on one study -----------------------------------------------------------------------
def record_in_child(url: str, name: str, seed: int, start, queue) -> None:
    """One worker: 10 trials, each recording its rung-1 result as soon as the others are started too."""
    storage = open_storage(parse(url))
    study = optuna.load_study(study_name=name, storage=storage)
    rng = random.Random(seed)
    start.wait(60)
    out = []
    for _ in range(10):
        trial = study.ask()
        top1, gflops = rng.random(), rng.uniform(1, 10)
        out.append((trial.number, record_and_decide(study, trial.number, 1, top1, gflops)))
    queue.put(out)


def four_workers_record(url: str) -> tuple[optuna.Study, dict[int, bool]]:
    name = f"stop-{uuid.uuid4().hex[:10]}"
    study = optuna.create_study(study_name=name, storage=open_storage(parse(url)),
                                directions=["maximize", "minimize"])
    ctx = mp.get_context("spawn")
    start, queue = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=record_in_child, args=(url, name, seed, start, queue)) for seed in range(4)]
    for p in procs:
        p.start()
    start.set()
    returned = dict(pair for _ in procs for pair in queue.get(timeout=120))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return study, returned


def check_forty_records(study: optuna.Study, returned: dict[int, bool]) -> None:
    records = rung_records(study)
    assert len(returned) == 40 and sorted(r.trial for r in records) == sorted(returned) == list(range(40))
    assert {r.trial: r.continues for r in records} == returned
    assert disagreements(records) == []
    arrival = {r.trial: r.arrival_us for r in records}
    for r in records:  # a decision only ever used records that were there before it (one host, one clock)
        assert all(arrival[t] < r.arrival_us for t in r.seen)
    assert 0 < sum(returned.values()) < 40


@pytest.mark.slow
def test_four_processes_on_a_journal_file(tmp_path):
    study, returned = four_workers_record(f"journal://{tmp_path}/study.log")
    check_forty_records(study, returned)


@pytest.mark.slow
def test_four_processes_on_postgresql(pg_url):
    study, returned = four_workers_record(pg_url)
    try:
        check_forty_records(study, returned)
    finally:
        optuna.delete_study(study_name=study.study_name, storage=study._storage)
