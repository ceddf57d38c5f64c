"""How a study was run: the facts a NAS result should state (Lindauer & Hutter, JMLR 2020) that attnas knows.

`run_summary` is a data function (JSON-ready, what `attnas report --json` prints under "run"); the report
draws it (studies.report `run_section`). It reads only what the study stored: its study file, its records,
the data summary and the workers' environments (studies.records), `attnas fidelity`'s numbers, and a
random-sampler baseline when the user ran one.

A random-sampler baseline is found, not declared: a study in the same storage whose stored study file has the
same identity (space, objectives, data, schedule) and `[sampler] name = "random"`. Running the study file
again under another `name` with the random sampler is all it takes; both fronts are then scored against one
hypervolume reference point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from .config import StudyConfig
from .records import (
    Status,
    TrialRecord,
    counts,
    front_candidates,
    hypervolume,
    objectives_of,
    records,
    setups,
)

#: Records whose training cost is recorded (seconds, epochs): reused and over-budget ones never trained.
TRAINING = (Status.TRAINED, Status.STOPPED, Status.DIVERGED)
RANDOM = "random"


def run_summary(rs: Sequence[TrialRecord], config: StudyConfig | None, envs: Sequence[Mapping[str, Any]],
                data: Mapping[str, Any] | None = None, fidelity: Mapping[str, Any] | None = None,
                baseline: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The "How this study was run" section's data: space, budget per trial, sampler, outcomes, compute,
    proxy fidelity, random baseline, environment. Parts the study does not know are None."""
    return {
        "space": space_of(config),
        "budget": budget_of(config, data),
        "sampler": sampler_of(config, len(envs)),
        "counts": counts(rs),
        "planned": config.trials if config is not None else None,
        "compute": compute_of(rs),
        "fidelity": fidelity_of(fidelity),
        "random_baseline": dict(baseline) if baseline else None,
        "environment": {**setups(envs), "records": [dict(e) for e in envs]},
    }


def space_of(config: StudyConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return {"size": config.space.size(), "settings": config.space.to_dict()}


def budget_of(config: StudyConfig | None, data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What one trial gets: epochs, images, resolution, seeds (and the width and batch of the proxy)."""
    if config is None:
        return None
    schedule, subset = config.schedule, config.data
    data = data or {}
    return {"epochs": schedule.epochs, "seeds": schedule.seeds, "seed": schedule.seed,
            "train_per_class": subset.train_per_class, "holdout_per_class": subset.holdout_per_class,
            "classes": data.get("classes"), "train_images": data.get("train_images"),
            "holdout_images": data.get("holdout_images"), "resolution": subset.resolution,
            "width_mult": schedule.width_mult, "batch_size": schedule.batch_size, "data": subset.root,
            "deploy_resolution": config.objectives.resolution, "max_gflops": config.max_gflops,
            "early_stopping": config.early_stopping.kind}


def sampler_of(config: StudyConfig | None, workers: int) -> dict[str, Any] | None:
    """The sampler and its seed; worker 0 uses the seed itself, the others seeds derived from it."""
    if config is None:
        return None
    s = config.sampler
    return {"name": s.name, "seed": s.seed, "startup_trials": s.startup_trials, "workers": workers}


def compute_of(rs: Sequence[TrialRecord]) -> dict[str, Any]:
    """Training time and epochs as recorded (every seed of a trial counted; a failed trial records none)."""
    trained = [r for r in rs if r.status in TRAINING]
    return {"trials": len(trained), "seconds": sum(r.seconds or 0.0 for r in trained),
            "epochs": sum(r.epochs * max(1, len(r.seeds)) for r in trained)}


def fidelity_of(fidelity: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The headline of `attnas fidelity`'s measurement (the report's fidelity section has the rest)."""
    if not fidelity:
        return None
    return {"linked_study": fidelity.get("linked_study"),
            "architectures": len(fidelity.get("architectures") or ()),
            "kendall_tau": (fidelity.get("kendall_tau") or {}).get("value"),
            "spearman_rho": (fidelity.get("spearman_rho") or {}).get("value"),
            "front_kept": fidelity.get("front_kept"), "front_size": fidelity.get("front_size")}


# -- a random-sampler baseline ----------------------------------------------------------------------------------
def random_baseline(study: optuna.Study, config: StudyConfig | None) -> dict[str, Any] | None:
    """The same study run with the random sampler, when the storage holds one (see the module docstring):
    its name, finished trials and hypervolume beside this study's, both against one reference point."""
    if config is None or config.sampler.name == RANDOM:
        return None
    other = find_random_twin(study, config)
    if other is None:
        return None
    objectives = objectives_of(study)
    mine, theirs = records(study), records(other)
    reference = shared_reference(mine, theirs, objectives)
    return {"study": other.study_name, "trials": finished(theirs), "this_trials": finished(mine),
            "hypervolume": hypervolume(theirs, reference, objectives),
            "this_hypervolume": hypervolume(mine, reference, objectives), "reference": list(reference)}


def find_random_twin(study: optuna.Study, config: StudyConfig) -> optuna.Study | None:
    """A study in the same storage with this one's identity and the random sampler (the first by name)."""
    from .config import StudyError, from_dict

    mine = plain(config.identity())
    for summary in sorted(optuna.get_all_study_summaries(study._storage, include_best_trial=False),
                          key=lambda s: s.study_name):
        stored = summary.user_attrs.get("attnas.config")
        if summary.study_name == study.study_name or not isinstance(stored, Mapping):
            continue
        if (stored.get("sampler") or {}).get("name") != RANDOM:
            continue
        try:
            if plain(from_dict(dict(stored)).identity()) == mine:
                return optuna.load_study(study_name=summary.study_name, storage=study._storage)
        except StudyError:
            continue
    return None


def plain(value: Any) -> Any:
    """JSON round-trip form, so identities stored by different backends (tuples/lists, ints/floats) compare."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def shared_reference(a: Sequence[TrialRecord], b: Sequence[TrialRecord],
                     objectives: Sequence[str]) -> tuple[float, ...]:
    """records.reference_point over both studies' candidates: 0 for top-1, 1.1 × the largest value otherwise."""
    from .records import reference_point

    return reference_point([*front_candidates(a, objectives), *front_candidates(b, objectives)], objectives)


def finished(rs: Sequence[TrialRecord]) -> int:
    return sum(1 for r in rs if r.status not in (Status.QUEUED, Status.RUNNING))
