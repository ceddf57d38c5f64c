"""optuna-dashboard on a study's storage, with feasibility shown correctly.

optuna-dashboard 0.21 has two blind spots for constrained multi-objective studies:
  * it reads only the legacy `system_attrs["constraints"]` list, so trials whose constraints were set
    with optuna 5's `set_constraint` look feasible in every plot; `set_constraints` writes that list for
    new trials and `backfill_legacy_constraints` adds it to trials recorded otherwise;
  * its study API computes `best_trials` (the Pareto front it lists) over all complete trials, ignoring
    constraints, so an over-budget architecture can be listed as "best"; `feasible_pareto_front` feeds
    its own front function only the feasible trials, which is what `Study.best_trials` means in optuna 5.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from studies.constraints import LEGACY_KEY, feasible, needs_legacy_list
from studies.storage import StorageInfo, open_storage, parse

log = logging.getLogger(__name__)

FrontFn = Callable[[Sequence[FrozenTrial], Sequence[StudyDirection]], list[FrozenTrial]]
_UNPATCHED_FRONT: FrontFn | None = None


def serve(
    storage_url: str | StorageInfo, host: str = "127.0.0.1", port: int = 8080, artifacts: Path | None = None
) -> None:
    """Serve optuna-dashboard for every study in `storage_url` until interrupted (blocking).

    Takes any attnas storage URL, journal files included (optuna-dashboard's own URL parsing knows only
    SQL), and the artifact folder so each trial's spec JSON and checkpoint can be downloaded from its page.
    Binds to 127.0.0.1 by default: the dashboard can delete studies and has no authentication.
    """
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    info = parse(storage_url) if isinstance(storage_url, str) else storage_url
    storage = open_storage(info)
    for name in optuna.get_all_study_names(storage):
        backfill_legacy_constraints(optuna.load_study(study_name=name, storage=storage))
    patch_dashboard_front()
    store = FileSystemArtifactStore(str(artifacts)) if artifacts is not None and artifacts.is_dir() else None
    optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=store)


def dashboard_app(storage: str | BaseStorage) -> Any:
    """optuna-dashboard's WSGI app with our fixes, for a WSGI server (or tests) instead of `serve`."""
    import optuna_dashboard

    patch_dashboard_front()
    return optuna_dashboard.wsgi(storage)


def patch_dashboard_front() -> None:
    """Make the dashboard's study API list only feasible trials as its Pareto front (idempotent)."""
    global _UNPATCHED_FRONT
    from optuna_dashboard import _app

    if _UNPATCHED_FRONT is None:
        if not hasattr(_app, "get_pareto_front_trials"):
            raise RuntimeError(
                "optuna_dashboard._app.get_pareto_front_trials is gone (optuna-dashboard changed); "
                "the dashboard would list infeasible trials as best: pin optuna-dashboard 0.21"
            )
        _UNPATCHED_FRONT = _app.get_pareto_front_trials
        _app.get_pareto_front_trials = feasible_pareto_front


def feasible_pareto_front(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> list[FrozenTrial]:
    """The dashboard's own Pareto front, computed over feasible trials only (optuna 5's best_trials)."""
    if _UNPATCHED_FRONT is None:
        raise RuntimeError("call patch_dashboard_front() first")
    return _UNPATCHED_FRONT([t for t in trials if feasible(t)], directions)


def backfill_legacy_constraints(study: optuna.Study) -> int:
    """Add the legacy constraints list to trials that lack it; returns how many trials were fixed.

    Running trials go through the public storage API. Finished trials are read-only there, so on an
    RDB storage (sqlite/postgres: what studies use) the attribute row is written directly through
    optuna's own ORM models; on other storages finished trials are left alone and a warning says so.
    """
    pending = {t._trial_id: values for t in study.get_trials(deepcopy=False) if (values := needs_legacy_list(t))}
    running = {t._trial_id for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for trial_id in pending.keys() & running:
        study._storage.set_trial_system_attr(trial_id, LEGACY_KEY, pending[trial_id])
    finished = {tid: v for tid, v in pending.items() if tid not in running}
    rdb = rdb_backend(study._storage)
    if finished and rdb is None:
        log.warning(
            "%d finished trials of %s lack the legacy constraints list and %s cannot be updated; "
            "optuna-dashboard will show them as feasible",
            len(finished), study.study_name, type(study._storage).__name__,
        )
        return len(pending) - len(finished)
    if finished and rdb is not None:
        write_finished_system_attrs(rdb, finished)
    return len(pending)


def rdb_backend(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage under optuna's cache wrapper, if the study lives in a database."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def write_finished_system_attrs(rdb: RDBStorage, lists: dict[int, list[float]]) -> None:
    """Upsert `system_attrs["constraints"]` rows of finished trials in one transaction."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session, True) as session:
        for trial_id, values in lists.items():
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            row = models.TrialSystemAttributeModel.find_by_trial_and_key(trial, LEGACY_KEY, session)
            if row is None:
                row = models.TrialSystemAttributeModel(trial_id=trial_id, key=LEGACY_KEY)
                session.add(row)
            row.value_json = json.dumps(values)
