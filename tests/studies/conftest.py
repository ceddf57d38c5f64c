"""Small multi-objective studies shaped exactly like the trials in docs/CONTRACT.md (and the legacy form).

Built here with real optuna ask/tell, without training or the run loop, so the records/report/dashboard
tests depend only on the contract: values [top1 (0.0 untrained), gflops], one user attr "attnas", the
constraints gflops_budget and front_eligible written through studies.constraints.set_constraints. The
legacy variant writes what attnas wrote before the contract (spec/spec_id/spec_name/scores/reused_from/error).
"""

from __future__ import annotations

import os
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
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
    """One trial as the worker would record it; `outcome` 'failed' means the trial raised."""

    kinds: tuple[str, str, str, str]
    top1: float | None
    gflops: float
    outcome: str = "trained"
    error: str | None = None


def spec_of(kinds: tuple[str, ...]) -> ArchSpec:
    return ArchSpec(backbone="resnet50", width=1.0, stages=tuple(BLOCKS[k] for k in kinds))


def synthetic_records(n: int, seed: int = 0, budget: float | None = BUDGET) -> list[Record]:
    """`n` architectures whose cost and accuracy grow with the attention they carry (plus noise), recorded
    as the worker does: over `budget` never trained (top-1 None), a repeated trained spec reused."""
    rng = np.random.default_rng(seed)
    out: list[Record] = []
    for _ in range(n):
        kinds = tuple(str(rng.choice(list(KIND_COST))) for _ in STAGES)
        gflops = round(4.1 + sum(KIND_COST[k] * (i + 1) / 2 for i, k in enumerate(kinds)), 3)
        top1 = round(0.55 + sum(KIND_GAIN[k] for k in kinds) + float(rng.normal(0, 0.01)), 4)
        first = next((r for r in out if r.kinds == kinds and r.outcome != "reused"), None)
        if first is not None and first.outcome == "trained":  # a repeated spec is copied, never retrained
            out.append(Record(kinds, first.top1, gflops, "reused"))
        elif budget is not None and gflops > budget:
            out.append(Record(kinds, None, gflops, "over_budget"))
        else:
            out.append(Record(kinds, top1, gflops))
    return out


def mixed_records() -> list[Record]:
    """One of each outcome: trained ×3 (one dominated), over budget, reused (a copy of #0), diverged
    (the cheapest spec: at top-1 0 it would be on a front that ignored status), failed."""
    return [
        Record(("none", "se", "none", "none"), 0.61, 4.2),
        Record(("se", "se", "gc", "none"), 0.66, 4.6),
        Record(("none", "none", "gc", "none"), 0.58, 4.5),  # dominated by #0
        Record(("nl", "nl", "nl", "nl"), None, 7.1, "over_budget"),
        Record(("none", "se", "none", "none"), 0.61, 4.2, "reused"),
        Record(("none", "none", "none", "none"), None, 4.1, "diverged"),
        Record(("gc", "none", "se", "se"), None, 4.8, "failed", "trial 6: RuntimeError: CUDA error: out of memory"),
    ]


def record_trial(study: optuna.Study, record: Record, budget: float | None = BUDGET,
                 legacy: bool = False) -> optuna.trial.FrozenTrial:
    """Ask, suggest the stage kinds, constrain before 'training', record, tell — as the worker does."""
    trial = study.ask()
    for stage in STAGES:
        trial.suggest_categorical(f"{stage}.kind", list(KIND_COST))
    spec = spec_of(record.kinds)
    gap = -1.0 if budget is None else record.gflops - budget
    known = {"spec": spec.to_dict(), "spec_id": spec.id, "spec_name": spec.name, "gflops": record.gflops,
             "gflops_fvcore": round(record.gflops * 0.98, 4), "params": 25_600_000 + 1000 * len(spec.name)}
    earlier = reused_from(study, spec.id) if record.outcome == "reused" else None
    (_legacy if legacy else _contract)(trial, record, known, gap, earlier)
    if record.outcome == "failed":
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(trial, [record.top1 if record.top1 is not None else 0.0, record.gflops])
    return study.trials[trial.number]


def _contract(trial: optuna.Trial, record: Record, known: dict, gap: float, earlier: int | None) -> None:
    set_constraints(trial, {"gflops_budget": gap, "front_eligible": -1.0})
    trial.set_user_attr("attnas", known)
    if record.outcome == "failed":
        trial.set_user_attr("attnas", {**known, "error": record.error, "epochs": 0, "start_epoch": 0})
        return
    trained = record.outcome == "trained"
    if record.outcome in ("diverged", "stopped", "reused"):
        set_constraints(trial, {"front_eligible": 1.0})
    curve = [round((record.top1 or 0.1) * f, 4) for f in (0.5, 0.8, 1.0)] if trained else []
    trial.set_user_attr("attnas", {
        **known, "outcome": record.outcome, "top1": record.top1, "top5": None,
        "epochs": 3 if trained else 0, "start_epoch": 0, "curve": curve, "seconds": 1.0 if trained else 0.0,
        "reused_from": earlier, "error": None, "artifacts": [],
    })


def _legacy(trial: optuna.Trial, record: Record, known: dict, gap: float, earlier: int | None) -> None:
    set_constraints(trial, {"gflops_budget": gap})
    for key in ("spec", "spec_id", "spec_name"):
        trial.set_user_attr(key, known[key])
    if record.outcome == "failed":
        trial.set_user_attr("error", record.error)
        return
    status = {"trained": "ok", "reused": "ok"}.get(record.outcome, record.outcome)
    scores = {"spec_id": known["spec_id"], "name": known["spec_name"], "gflops": record.gflops,
              "gflops_fvcore": known["gflops_fvcore"], "params": known["params"], "feasible": gap <= 0,
              "status": status, "top1": record.top1, "top5": None, "epochs": 1, "seconds": 1.0,
              "images_per_s": 100.0, "checkpoint": None}
    trial.set_user_attr("scores", scores)
    if earlier is not None:
        trial.set_user_attr("reused_from", earlier)


def reused_from(study: optuna.Study, spec_id: str) -> int | None:
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        data = t.user_attrs.get("attnas") or t.user_attrs
        if data.get("spec_id") == spec_id:
            return t.number
    return None


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


def make_study(records: list[Record], storage: str | None = None, budget: float | None = BUDGET,
               name: str = "attnas-test", legacy: bool = False) -> optuna.Study:
    """A maximize-top1 / minimize-GFLOPs study holding `records`, as the worker would leave it."""
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize", "minimize"],
                                sampler=fixed_kinds_sampler(records))
    if not legacy:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["top1", "gflops"])
    study.set_user_attr("attnas.version", "0.1.0")
    for record in records:
        record_trial(study, record, budget, legacy)
    return study


@pytest.fixture(scope="session")
def synthetic() -> SimpleNamespace:
    """The synthetic-study helpers above, for tests: synthetic.make_study(synthetic.records(12)), ..."""
    return SimpleNamespace(make_study=make_study, records=synthetic_records, mixed=mixed_records, Record=Record,
                           record_trial=record_trial, spec_of=spec_of, budget=BUDGET)


@pytest.fixture
def attnas_here(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """A function(*args) like the `attnas` fixture, but running the console script's `main` in this process."""

    import subprocess
    import sys

    from studies.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["attnas", *args])
        capfd.readouterr()
        with pytest.raises(SystemExit) as done:
            main()
        captured = capfd.readouterr()
        return subprocess.CompletedProcess(args, done.value.code, captured.out, captured.err)

    return run


@pytest.fixture
def tmpfs(tmp_path: Path):
    """A function(name, options) mounting a small tmpfs under tmp_path; unmounted afterwards (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (full or read-only disk) needs root")
    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        where = tmp_path / name
        where.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()})")
        mounted.append(where)
        return where

    yield mount
    import gc

    gc.collect()  # SQLite connections of the test's storages still hold files open on the mount
    for where in mounted:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)  # detach now, freed when the last file closes
