"""evaluate(): the cost comes first, over-budget specs are never trained, training results are carried."""

import pytest

import objectives.scoring as scoring
from objectives import Scores, count_flops, evaluate
from search_space import NL, SE, ArchSpec, NoAttn
from trainer import ProxyResult, Schedule, SubsetSpec

SUBSET = SubsetSpec(root="/nonexistent/never-read", resolution=32, holdout_per_class=2)
SCHEDULE = Schedule(epochs=1, width_mult=0.25)
HEAVY = ArchSpec("resnet50", stages=(NoAttn(), NoAttn(), NL(0.5, 3), NoAttn()))


def test_over_budget_spec_is_never_trained(monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("an over-budget spec reached proxy_train")

    monkeypatch.setattr(scoring, "proxy_train", no_training)
    costs = []
    scores = evaluate(HEAVY, SUBSET, SCHEDULE, max_gflops=4.2, on_cost=costs.append)
    assert scores.status == "over_budget" and not scores.feasible
    assert scores.top1 is None and scores.epochs == 0
    assert scores.gflops == pytest.approx(count_flops(HEAVY).gflops) and scores.gflops > 4.2
    assert [c.gflops for c in costs] == [scores.gflops]


def test_affordable_spec_reports_its_cost_before_training(monkeypatch):
    events = []

    def fake_train(spec, subset, schedule, device, **kwargs):
        events.append(("train", spec.id, subset, schedule, device))
        return ProxyResult(top1=0.75, top5=0.95, epochs=1, seconds=2.0, images_per_s=100.0, status="ok",
                           checkpoint="/tmp/final.pt")

    monkeypatch.setattr(scoring, "proxy_train", fake_train)
    spec = ArchSpec("resnet18", stages=(SE(), NoAttn(), NoAttn(), NoAttn()))
    scores = evaluate(spec, SUBSET, SCHEDULE, max_gflops=10.0, on_cost=lambda cost: events.append(("cost",)))
    assert [e[0] for e in events] == ["cost", "train"]
    assert events[1][1:] == (spec.id, SUBSET, SCHEDULE, "cpu")
    assert scores.feasible and scores.status == "ok"
    assert (scores.top1, scores.top5, scores.epochs, scores.checkpoint) == (0.75, 0.95, 1, "/tmp/final.pt")
    assert scores.name == spec.name and scores.spec_id == spec.id
    assert Scores.from_dict(scores.to_dict()) == scores
