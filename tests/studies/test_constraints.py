"""set_constraints writes both constraint formats; the readers agree with optuna on feasibility."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest

from studies.constraints import LEGACY_KEY, constraint_values, feasible, legacy_list, set_constraints

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
    assert legacy_list(frozen.system_attrs) == frozen.system_attrs[LEGACY_KEY]


def test_front_eligible_flips_after_training_and_optuna_sees_the_new_value(tmp_path: Path) -> None:
    """docs/CONTRACT.md: front_eligible is -1 before training and +1 once a trial ends untrained. Optuna's own
    set_constraint keeps the first value (it warns and ignores the second); set_constraints updates it."""
    study = _study(tmp_path)
    kept, flipped = study.ask(), study.ask()
    for trial in (kept, flipped):
        set_constraints(trial, {"gflops_budget": -1.0, "front_eligible": -1.0})
    with pytest.warns(UserWarning, match="already set"):
        kept.set_constraint("front_eligible", 1.0)
    set_constraints(flipped, {"front_eligible": 1.0})
    study.tell(kept, [0.0, 3.0])
    study.tell(flipped, [0.0, 2.0])  # cheaper: on the front unless its constraint says otherwise
    a, b = study.trials
    assert constraint_values(a) == {"front_eligible": -1.0, "gflops_budget": -1.0}
    assert constraint_values(b) == {"front_eligible": 1.0, "gflops_budget": -1.0}
    assert b.system_attrs[LEGACY_KEY] == [1.0, -1.0]  # sorted by key, what optuna-dashboard reads
    assert [t.number for t in study.best_trials] == [0]


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
    assert constraint_values(new) == {"gflops_budget": -0.25} and feasible(new)
    assert LEGACY_KEY not in new.system_attrs and legacy_list(new.system_attrs) == [-0.25]  # dashboard lacks it


def test_unconstrained_trial_is_feasible_and_nan_is_refused(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    with pytest.raises(ValueError, match="NaN"):
        set_constraints(trial, {"gflops_budget": math.nan})
    study.tell(trial, [0.5, 1.0])
    assert constraint_values(study.trials[0]) == {}
    assert feasible(study.trials[0])
