"""optuna-dashboard on a study's storage, with feasibility and the Pareto front shown as attnas sees them.

What optuna-dashboard 0.21 reads (checked in its source, and pinned by tests/studies/test_dashboard.py):
  * a trial's constraints only from the legacy `system_attrs["constraints"]` list: its plots draw a trial
    with a positive value there as infeasible, and its Pareto-front plot is the non-dominated set of the
    feasible complete trials. `set_constraints` writes that list for every trial; `backfill_constraints`
    adds it (and `front_eligible` = +1 for diverged and reused trials of studies written before the
    contract) to old trials;
  * the study API's `best_trials` (the "Best Trials" card and the trial list's best filter) is computed
    from all complete trials *ignoring* constraints. `dashboard_app` wraps optuna-dashboard's public
    `wsgi()` app and drops from that JSON list every trial whose own `constraints` field holds a positive
    value. That filter of the unconstrained front equals the front of the feasible trials, because an
    infeasible trial never dominates a trained one here: untrained trials are told top-1 0.0 and a reused
    copy has its original's values. No private dashboard code is imported or patched.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from studies.constraints import ELIGIBLE_KEY, LEGACY_KEY, PREFIX, legacy_list, named_constraints
from studies.records import Status, record
from studies.storage import StorageInfo, open_to_read, parse

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
STUDY_DETAIL = re.compile(r"^/api/studies/\d+/?$")
#: Outcomes that end a trial without a real top-1: docs/CONTRACT.md gives them front_eligible = +1.
UNTRAINED = (Status.DIVERGED, Status.STOPPED, Status.REUSED)


def serve(
    storage_url: str | StorageInfo, host: str = "127.0.0.1", port: int = 8080, artifacts: Path | None = None
) -> None:
    """Serve optuna-dashboard for every study in `storage_url` until interrupted (blocking).

    Takes any attnas storage URL, journal files included (optuna-dashboard's own URL parsing knows only
    SQL), and the artifact folder so each trial's spec JSON and checkpoint can be downloaded from its page.
    Binds to 127.0.0.1 by default: the dashboard can delete studies and has no authentication.
    """
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from optuna.artifacts import FileSystemArtifactStore

    info = parse(storage_url) if isinstance(storage_url, str) else storage_url
    storage = open_to_read(info)  # a torn journal tail is left to the workers; edits append safely
    for name in optuna.get_all_study_names(storage):
        backfill_constraints(optuna.load_study(study_name=name, storage=storage))
    store = FileSystemArtifactStore(str(artifacts)) if artifacts is not None and artifacts.is_dir() else None

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    with make_server(host, port, dashboard_app(storage, store), handler_class=Quiet) as server:
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            return


def dashboard_app(storage: str | BaseStorage, artifact_store: Any = None) -> WSGIApp:
    """optuna-dashboard's public WSGI app, its API's best trials limited to feasible ones."""
    import optuna_dashboard

    return feasible_best_trials(optuna_dashboard.wsgi(storage, artifact_store=artifact_store))


def feasible_best_trials(app: WSGIApp) -> WSGIApp:
    """Wrap a WSGI app so a study-detail response lists only trials without a positive constraint as best."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or not STUDY_DETAIL.match(environ.get("PATH_INFO", "")):
            return app(environ, start_response)
        seen: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            seen.update(status=status, headers=headers)
            return lambda data: None

        result = app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        if seen["status"].startswith("200"):
            body = only_feasible_best(body)
        headers = [(k, v) for k, v in seen["headers"] if k.lower() != "content-length"]
        start_response(seen["status"], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    return wrapped


def only_feasible_best(body: bytes) -> bytes:
    """The study-detail JSON with `best_trials` filtered by each trial's own `constraints` (all <= 0)."""
    detail = json.loads(body)
    best = detail.get("best_trials")
    if not isinstance(best, list):
        log.warning("optuna-dashboard's study API has no best_trials list any more; its front is shown as is")
        return body
    detail["best_trials"] = [t for t in best if all(c <= 0 for c in t.get("constraints") or [])]
    return json.dumps(detail).encode()


# -- old studies: write the constraints the dashboard (and optuna's best_trials) read ---------------------------
def missing_constraint_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """System attrs this trial lacks for the public constraint path: front_eligible = +1 on an untrained
    complete trial recorded before the contract, and the legacy list the dashboard reads."""
    attrs = dict(trial.system_attrs)
    has_names = bool(named_constraints(attrs)) or LEGACY_KEY not in attrs
    eligible_key = PREFIX + ELIGIBLE_KEY
    if (trial.state == TrialState.COMPLETE and eligible_key not in attrs and has_names
            and record(trial).status in UNTRAINED):
        attrs[eligible_key] = 1.0
    wanted = legacy_list(attrs)
    if wanted and attrs.get(LEGACY_KEY) != wanted:
        attrs[LEGACY_KEY] = wanted
    return {k: v for k, v in attrs.items() if k not in trial.system_attrs or trial.system_attrs[k] != v}


def backfill_constraints(study: optuna.Study) -> int:
    """Write the missing constraint attrs (above) into the study's trials; returns how many trials changed.

    Running trials go through the public storage API. Finished trials are read-only there, so on an
    RDB storage (sqlite/postgres: what studies use) the attribute rows are written directly through
    optuna's own ORM models; on other storages finished trials are left alone and a warning says so.
    """
    trials = study.get_trials(deepcopy=False)
    pending = {t._trial_id: attrs for t in trials if (attrs := missing_constraint_attrs(t))}
    running = {t._trial_id for t in trials if t.state == TrialState.RUNNING}
    for trial_id in pending.keys() & running:
        for key, value in pending[trial_id].items():
            study._storage.set_trial_system_attr(trial_id, key, value)
    finished = {tid: v for tid, v in pending.items() if tid not in running}
    rdb = rdb_backend(study._storage)
    if finished and rdb is None:
        log.warning(
            "%d finished trials of %s lack constraints optuna-dashboard reads and %s cannot be updated; "
            "the dashboard will show them as feasible",
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


def write_finished_system_attrs(rdb: RDBStorage, attrs: dict[int, dict[str, Any]]) -> None:
    """Upsert system attr rows of finished trials in one transaction."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session, True) as session:
        for trial_id, values in attrs.items():
            trial = models.TrialModel.find_or_raise_by_id(trial_id, session)
            for key, value in values.items():
                row = models.TrialSystemAttributeModel.find_by_trial_and_key(trial, key, session)
                if row is None:
                    row = models.TrialSystemAttributeModel(trial_id=trial_id, key=key)
                    session.add(row)
                row.value_json = json.dumps(value)
