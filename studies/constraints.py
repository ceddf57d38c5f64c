"""Trial constraints, written in both of the formats our readers understand.

Two keys (docs/CONTRACT.md): `gflops_budget` = GFLOPs - budget (-1.0 without a budget) and `front_eligible`
(-1.0 until a trial ends not trained to a real top-1: diverged, stopped, a reused duplicate: then +1.0).
Optuna's `best_trials`, optuna-dashboard's plots and `records.pareto_front` all leave out a trial with a
positive constraint, so they agree on the front without any private hook.

Optuna 5 stores each constraint as its own system attribute (`constraints:<key>`, via `set_constraint`),
but optuna-dashboard 0.21 still reads only the legacy `system_attrs["constraints"]` list; a trial without
that list shows as feasible there and over-budget architectures land on the dashboard's Pareto front.
So every write goes to both, and the readers here accept either (trials recorded by older code, or by
someone calling `set_constraint` directly).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: studies.config imports this at CLI start
    import optuna
    from optuna.trial import FrozenTrial

LEGACY_KEY = "constraints"
PREFIX = f"{LEGACY_KEY}:"
BUDGET_KEY = "gflops_budget"
ELIGIBLE_KEY = "front_eligible"


def set_constraints(trial: optuna.Trial, constraints: dict[str, float]) -> None:
    """Record `constraints` (each <= 0 means feasible) in optuna's format and the dashboard's legacy one.

    A later call may change a key (front_eligible flips from -1 to +1 when a trial ends untrained):
    optuna's own `Trial.set_constraint` keeps the first value and ignores later ones, so the named
    attributes are written through the trial's storage, exactly where `set_constraint` puts them. The
    legacy list holds all of the trial's values in sorted key order, kept consistent on every call.
    """
    values = {}
    for key in sorted(constraints):
        value = float(constraints[key])
        if math.isnan(value):
            raise ValueError(f"constraint {key!r} is NaN; use a number (<= 0 means feasible)")
        values[key] = value
    storage, trial_id = trial.storage, trial._trial_id
    for key, value in values.items():
        storage.set_trial_system_attr(trial_id, PREFIX + key, value)
    storage.set_trial_system_attr(trial_id, LEGACY_KEY, legacy_list(storage.get_trial_system_attrs(trial_id)))


def legacy_list(system_attrs: Mapping[str, Any]) -> list[float]:
    """The legacy list a trial with these system attrs should carry: new-format values, sorted by key."""
    named = named_constraints(system_attrs)
    return [named[key] for key in sorted(named)]


def named_constraints(system_attrs: Mapping[str, Any]) -> dict[str, float]:
    """Constraints stored in optuna 5's one-attribute-per-key format, by key."""
    return {key[len(PREFIX) :]: float(v) for key, v in system_attrs.items() if key.startswith(PREFIX)}


def constraint_values(frozen_trial: FrozenTrial) -> dict[str, float]:
    """A trial's constraints by name, from either format.

    Optuna's own `FrozenTrial.constraints` merges both formats, so a trial written by `set_constraints`
    would report every value twice ('0' and 'gflops_budget'); here the named format wins and the
    legacy list (positional keys '0', '1', ...) is used only when it is all there is.
    """
    system_attrs = frozen_trial.system_attrs
    named = named_constraints(system_attrs)
    if named:
        return named
    legacy = system_attrs.get(LEGACY_KEY) or []
    return {str(i): float(v) for i, v in enumerate(legacy)}


def feasible(frozen_trial: FrozenTrial) -> bool:
    """True when every constraint is <= 0 (optuna's rule; a trial without constraints is feasible)."""
    return all(v <= 0.0 for v in constraint_values(frozen_trial).values())
