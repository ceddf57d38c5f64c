"""Small multi-objective studies shaped exactly like the trial records in docs/INTERFACES.md.

Built here, without training or the run loop, so the report/dashboard/constraint tests depend only on
the contract (values [top1, gflops], user_attrs spec/spec_id/spec_name/scores, constraint gflops_budget).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from search_space.spec import GC, NL, SE, STAGES, ArchSpec, NoAttn
from studies.constraints import set_constraints

BUDGET = 5.3
KIND_COST = {"none": 0.0, "se": 0.1, "gc": 0.15, "nl": 0.6}
KIND_GAIN = {"none": 0.0, "se": 0.02, "gc": 0.025, "nl": 0.03}
BLOCKS = {"none": NoAttn(), "se": SE(16, "scale"), "gc": GC(16, "add", "att"), "nl": NL(0.5, 1, "add", False)}


@dataclass(frozen=True)
class Record:
    """One trial as the run loop would record it."""

    kinds: tuple[str, str, str, str]
    top1: float
    gflops: float


def spec_of(kinds: tuple[str, ...]) -> ArchSpec:
    return ArchSpec(backbone="resnet50", width=1.0, stages=tuple(BLOCKS[k] for k in kinds))


def synthetic_records(n: int, seed: int = 0) -> list[Record]:
    """`n` architectures whose cost and accuracy grow with the attention they carry (plus noise)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        kinds = tuple(rng.choice(list(KIND_COST)) for _ in STAGES)
        gflops = 4.1 + sum(KIND_COST[k] * (i + 1) / 2 for i, k in enumerate(kinds))
        top1 = 0.55 + sum(KIND_GAIN[k] for k in kinds) + float(rng.normal(0, 0.01))
        out.append(Record(kinds, round(top1, 4), round(gflops, 3)))
    return out


def record_trial(study: optuna.Study, record: Record, budget: float | None = BUDGET) -> optuna.trial.FrozenTrial:
    """Ask, suggest the stage kinds, set the constraint before 'training', tell — like the run loop."""
    trial = study.ask()
    for stage in STAGES:
        trial.suggest_categorical(f"{stage}.kind", list(KIND_COST))
    spec = spec_of(record.kinds)
    set_constraints(trial, {"gflops_budget": -1.0 if budget is None else record.gflops - budget})
    scores = {
        "spec_id": spec.id,
        "name": spec.name,
        "gflops": record.gflops,
        "gflops_fvcore": record.gflops * 0.98,
        "params": 25_600_000 + 1000 * len(spec.name),
        "feasible": budget is None or record.gflops <= budget,
        "status": "ok",
        "top1": record.top1,
        "top5": None,
        "epochs": 1,
        "seconds": 1.0,
        "images_per_s": 100.0,
        "checkpoint": None,
    }
    for key, value in {"spec": spec.to_dict(), "spec_id": spec.id, "spec_name": spec.name, "scores": scores}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, [record.top1, record.gflops])
    return study.trials[trial.number]


def fixed_kinds_sampler(records: list[Record]) -> optuna.samplers.BaseSampler:
    """A sampler that suggests each record's stage kinds in order, so params match the specs."""
    fixed = [{f"{s}.kind": k for s, k in zip(STAGES, r.kinds, strict=True)} for r in records]
    return _Fixed(fixed)


class _Fixed(optuna.samplers.RandomSampler):
    def __init__(self, fixed: list[dict[str, str]]) -> None:
        super().__init__(seed=0)
        self._fixed = fixed

    def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
        return self._fixed[trial.number][param_name]


def make_study(
    records: list[Record], storage: str | None = None, budget: float | None = BUDGET, name: str = "attnas-test"
) -> optuna.Study:
    """A maximize-top1 / minimize-GFLOPs study holding `records`, as the run loop would leave it."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        directions=["maximize", "minimize"],
        sampler=fixed_kinds_sampler(records),
    )
    study.set_user_attr("attnas.version", "0.1.0")
    for record in records:
        record_trial(study, record, budget)
    return study


@pytest.fixture(scope="session")
def synthetic() -> SimpleNamespace:
    """The synthetic-study helpers above, for tests: synthetic.make_study(synthetic.records(12)), ..."""
    return SimpleNamespace(make_study=make_study, records=synthetic_records, record_trial=record_trial,
                           spec_of=spec_of, budget=BUDGET)
