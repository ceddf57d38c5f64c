"""set_constraints writes both constraint formats; the readers agree with optuna on feasibility."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from studies.constraints import LEGACY_KEY, constraint_values, feasible, needs_legacy_list, set_constraints

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", directions=["maximize", "minimize"])


def test_set_constraints_writes_named_and_legacy_formats(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    set_constraints(trial, {"params_budget": -2.0, "gflops_budget": 0.5})
    study.tell(trial, [0.7, 4.0])
    frozen = study.trials[0]
    assert frozen.system_attrs["constraints:gflops_budget"] == 0.5
    assert frozen.system_attrs["constraints:params_budget"] == -2.0
    assert frozen.system_attrs[LEGACY_KEY] == [0.5, -2.0]  # sorted by key: gflops_budget, params_budget
    assert constraint_values(frozen) == {"gflops_budget": 0.5, "params_budget": -2.0}
    assert not feasible(frozen)
    assert needs_legacy_list(frozen) is None


def test_feasibility_matches_optuna_and_best_trials_skip_infeasible(tmp_path: Path) -> None:
    study = _study(tmp_path)
    for top1, gflops, budget_gap in [(0.80, 5.0, 0.5), (0.70, 4.0, -0.5), (0.60, 3.0, -1.5)]:
        trial = study.ask()
        set_constraints(trial, {"gflops_budget": budget_gap})
        study.tell(trial, [top1, gflops])
    flags = [feasible(t) for t in study.trials]
    assert flags == [False, True, True]
    assert flags == [all(v <= 0 for v in t.constraints.values()) for t in study.trials]
    assert sorted(t.number for t in study.best_trials) == [1, 2]


def test_readers_accept_legacy_only_and_named_only_trials(tmp_path: Path) -> None:
    study = _study(tmp_path)
    legacy = study.ask()
    legacy.storage.set_trial_system_attr(legacy._trial_id, LEGACY_KEY, [0.25])
    study.tell(legacy, [0.5, 1.0])
    named = study.ask()
    named.set_constraint("gflops_budget", -0.25)
    study.tell(named, [0.4, 1.0])
    old, new = study.trials
    assert constraint_values(old) == {"0": 0.25} and not feasible(old)
    assert needs_legacy_list(old) is None
    assert constraint_values(new) == {"gflops_budget": -0.25} and feasible(new)
    assert needs_legacy_list(new) == [-0.25]  # what the dashboard is missing


def test_unconstrained_trial_is_feasible_and_nan_is_refused(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    with pytest.raises(ValueError, match="NaN"):
        set_constraints(trial, {"gflops_budget": math.nan})
    study.tell(trial, [0.5, 1.0])
    assert constraint_values(study.trials[0]) == {}
    assert feasible(study.trials[0])
