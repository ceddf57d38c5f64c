"""optuna-dashboard serves our studies with both objectives and correct feasibility (through its API)."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import moocore
import numpy as np
import optuna
import optuna_dashboard
import pytest

from studies.dashboard import backfill_constraints, dashboard_app
from studies.records import pareto_front, records

optuna.logging.set_verbosity(optuna.logging.WARNING)
REPO = Path(__file__).resolve().parents[2]


def get_json(app: Any, path: str) -> dict[str, Any]:
    """GET `path` from a WSGI app in-process and decode its JSON body."""
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []

    def start_response(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(code)
        return io.BytesIO().write

    body = b"".join(app(environ, start_response))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def study_detail(app: Any, name: str) -> dict[str, Any]:
    studies = get_json(app, "/api/studies")["study_summaries"]
    study_id = next(s["study_id"] for s in studies if s["study_name"] == name)
    return get_json(app, f"/api/studies/{study_id}")


@pytest.mark.parametrize("legacy", [False, True], ids=["contract", "legacy"])
def test_dashboard_api_front_is_the_records_front(tmp_path: Path, synthetic, legacy: bool) -> None:
    """Fails loudly when optuna-dashboard stops agreeing with records.pareto_front: what it reads (the
    legacy constraints list, each trial's values) or how its API's best_trials is made (constraint-blind
    in 0.21; dashboard_app drops the positively constrained trials from it)."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    synthetic.make_study(synthetic.mixed(), storage=url, name="mixed", legacy=legacy)
    if legacy:  # trials written before the contract carry no front_eligible: reused/diverged look best
        assert {4, 5} <= set(best_numbers(study_detail(dashboard_app(url), "mixed")))
        assert backfill_constraints(optuna.load_study(study_name="mixed", storage=url)) == 2
    assert backfill_constraints(optuna.load_study(study_name="mixed", storage=url)) == 0
    study = optuna.load_study(study_name="mixed", storage=url)
    front = [r.number for r in pareto_front(records(study))]
    assert front == [0, 1]

    plain = study_detail(optuna_dashboard.wsgi(url), "mixed")  # optuna-dashboard as it is, no wrapper
    assert plain["directions"] == ["maximize", "minimize"]
    if not legacy:
        assert plain["objective_names"] == ["top1", "gflops"]  # from study.set_metric_names
    complete = [t for t in plain["trials"] if t["state"] == "Complete"]
    positive = {t["number"] for t in complete if any(c > 0 for c in t["constraints"])}
    assert positive == {3, 4, 5}  # over budget, reused, diverged: what its plots draw as infeasible
    feasible = [t for t in complete if t["number"] not in positive]
    points = np.array([[-t["values"][0], t["values"][1]] for t in feasible])
    ui_front = sorted(t["number"] for t, keep in zip(feasible, moocore.is_nondominated(points, keep_weakly=True),
                                                     strict=True) if keep)
    assert ui_front == front  # the dashboard's Pareto-front plot: non-dominated feasible trials
    raw_best = set(best_numbers(plain))
    assert set(front) <= raw_best and raw_best - positive == set(front)  # what dashboard_app relies on

    assert best_numbers(study_detail(dashboard_app(url), "mixed")) == front
    assert sorted(t.number for t in study.best_trials) == front


def best_numbers(detail: dict[str, Any]) -> list[int]:
    return sorted(t["number"] for t in detail["best_trials"])


def named_only_study(url: str, name: str, synthetic) -> optuna.Study:
    """A study recorded the optuna-5 way only (`set_constraint`), as code other than ours would."""
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"])
    for top1, gflops in [(0.8, 6.0), (0.6, 4.0)]:
        trial = study.ask()
        trial.set_constraint("gflops_budget", gflops - synthetic.budget)
        study.tell(trial, [top1, gflops])
    return study


def test_backfill_fixes_trials_recorded_with_set_constraint_only(tmp_path: Path, synthetic) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    named_only_study(url, "old", synthetic)
    assert [t["constraints"] for t in study_detail(dashboard_app(url), "old")["trials"]] == [[], []]

    assert backfill_constraints(optuna.load_study(study_name="old", storage=url)) == 2
    assert backfill_constraints(optuna.load_study(study_name="old", storage=url)) == 0

    detail = study_detail(dashboard_app(url), "old")
    assert [t["constraints"] for t in detail["trials"]] == [[6.0 - synthetic.budget], [4.0 - synthetic.budget]]
    assert [t["number"] for t in detail["best_trials"]] == [1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_backfills_and_serves_the_feasible_front_on_localhost(tmp_path: Path, synthetic) -> None:
    url = f"sqlite:///{tmp_path / 'served.db'}"
    named_only_study(url, "served", synthetic)
    port = free_port()
    code = f"from studies.dashboard import serve; serve({url!r}, port={port})"
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}/api/studies"
    try:
        studies = poll_json(base, deadline=time.monotonic() + 30, log=tmp_path / "serve.log")
        assert [s["study_name"] for s in studies["study_summaries"]] == ["served"]
        detail = poll_json(f"{base}/{studies['study_summaries'][0]['study_id']}", deadline=0)
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
    assert detail["directions"] == ["maximize", "minimize"]
    budget = synthetic.budget
    assert [t["constraints"] for t in detail["trials"]] == [[6.0 - budget], [4.0 - budget]]  # backfilled
    assert [t["number"] for t in detail["best_trials"]] == [1]  # the infeasible 0.8-top1 trial is not best


def poll_json(url: str, deadline: float, log: Path | None = None) -> dict[str, Any]:
    """GET `url` over HTTP, retrying until `deadline` while the server starts."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url}: {exc}; server log: {log and log.read_text()}") from exc
            time.sleep(0.2)


def test_serve_reads_a_journal_file_and_serves_trial_artifacts(tmp_path: Path, synthetic) -> None:
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal, artifacts = tmp_path / "study.log", tmp_path / "study-artifacts"
    artifacts.mkdir()
    study = synthetic.make_study(synthetic.records(6, seed=1), storage=JournalStorage(JournalFileBackend(str(journal))))
    trial = study.ask()
    spec_file = tmp_path / "spec.json"
    spec_file.write_text('{"backbone": "resnet50"}')
    artifact_id = upload_artifact(
        artifact_store=FileSystemArtifactStore(str(artifacts)), file_path=str(spec_file), study_or_trial=trial
    )
    study.tell(trial, [0.5, 4.2])
    port = free_port()
    url = f"journal://{journal}"
    code = (
        "from pathlib import Path; from studies.dashboard import serve; "
        f"serve({url!r}, port={port}, artifacts=Path({str(artifacts)!r}))"
    )
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        summaries = poll_json(f"{base}/api/studies", deadline=time.monotonic() + 30, log=tmp_path / "serve.log")
        study_id = summaries["study_summaries"][0]["study_id"]
        detail = poll_json(f"{base}/api/studies/{study_id}", deadline=0)
        last = detail["trials"][-1]
        with urllib.request.urlopen(f"{base}/artifacts/{study_id}/{last['trial_id']}/{artifact_id}") as response:
            served = response.read()
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
    assert detail["directions"] == ["maximize", "minimize"]
    by_number = {t["number"]: t for t in detail["trials"][:-1]}
    assert {n: t["constraints"] for n, t in by_number.items()} == {
        t.number: [-1.0, t.values[1] - synthetic.budget] for t in study.trials[:-1]  # front_eligible, budget
    }
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted(t.number for t in study.best_trials)
    assert [a["artifact_id"] for a in last["artifacts"]] == [artifact_id]
    assert served == spec_file.read_bytes()
