"""One record per trial, one front: records.py reads both trial formats, and every reader lists the same front.

The acceptance study holds a trained, an over-budget, a reused, a diverged and a failed trial (plus a
dominated trained one), recorded with real optuna trials in the docs/CONTRACT.md format and in the legacy one.
`attnas front --json`, `attnas pick`, the report's front table and plot data, optuna's `best_trials` and
optuna-dashboard's API must all list exactly the same front.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.trial import TrialState

from studies import plots
from studies.config import StudyError
from studies.dashboard import backfill_constraints, dashboard_app
from studies.records import (
    Status,
    TrialRecord,
    counts,
    hypervolume,
    hypervolume_history,
    pareto_front,
    pick,
    record,
    records,
    reference_point,
)
from studies.report import front_rows, report_data, report_html

optuna.logging.set_verbosity(optuna.logging.WARNING)
#: Trial numbers in synthetic.mixed(): 0 and 1 trained on the front, 2 trained but dominated by 0,
#: 3 over budget, 4 reused (copy of 0), 5 diverged (the cheapest), 6 failed.
FRONT, OFF = [0, 1], {2, 3, 4, 5, 6}


@pytest.fixture(params=["contract", "legacy"])
def mixed(request, tmp_path: Path, synthetic) -> tuple[str, optuna.Study]:
    """The acceptance study in an SQLite file, in one of the two trial formats."""
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    study = synthetic.make_study(synthetic.mixed(), storage=url, name="mixed", legacy=request.param == "legacy")
    return url, study


def test_each_outcome_becomes_its_status_with_no_fake_top1(mixed) -> None:
    _, study = mixed
    rs = records(study)
    assert [r.status for r in rs] == [Status.TRAINED, Status.TRAINED, Status.TRAINED, Status.OVER_BUDGET,
                                      Status.REUSED, Status.DIVERGED, Status.FAILED]
    assert counts(rs) == {"trained": 3, "over_budget": 1, "reused": 1, "diverged": 1, "failed": 1}
    assert [r.top1 for r in rs] == [0.61, 0.66, 0.58, None, 0.61, None, None]  # never the told 0.0
    assert [r.feasible for r in rs[:6]] == [True, True, True, False, True, True]
    assert rs[4].reused_from == 0 and rs[4].spec_id == rs[0].spec_id
    assert rs[6].error == "trial 6: RuntimeError: CUDA error: out of memory"
    assert rs[0].spec is not None and rs[0].spec.name == rs[0].spec_name and rs[0].choices == study.trials[0].params
    for r in rs:  # the JSON of every --json output: plain, NaN-free, the spec as its dict
        text = json.dumps(r.to_dict(), allow_nan=False)
        assert json.loads(text)["status"] == r.status.value
    assert rs[0].to_dict()["spec"] == study.trials[0].user_attrs.get("attnas", study.trials[0].user_attrs)["spec"]


def test_trial_states_map_to_statuses(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial({})
    running = study.ask()
    interrupted = study.ask()
    interrupted.set_user_attr("error", "interrupted")
    study.tell(interrupted, state=TrialState.FAIL)
    pruned = study.ask()
    study.tell(pruned, state=TrialState.PRUNED)
    stopped = study.ask()
    stopped.set_user_attr("attnas", {"outcome": "stopped", "top1": 0.4, "gflops": 4.0, "epochs": 2})
    study.tell(stopped, [0.0, 4.0])
    study.enqueue_trial({})
    statuses = {t.number: record(t).status for t in study.trials}
    assert statuses == {0: Status.RUNNING, 1: Status.INTERRUPTED, 2: Status.STOPPED, 3: Status.STOPPED,
                        4: Status.QUEUED}
    assert running.number == 0
    assert record(study.trials[3]).top1 == 0.4 and record(study.trials[3]).epochs == 2


def rec(number: int, top1: float, gflops: float, spec_id: str | None = None, **kw: Any) -> TrialRecord:
    return TrialRecord(number=number, status=kw.pop("status", Status.TRAINED), top1=top1, gflops=gflops,
                       spec_id=spec_id or f"id{number}", params=kw.pop("params", None), **kw)


def test_front_keeps_ties_deterministically_and_one_record_per_spec() -> None:
    rs = [rec(0, 0.7, 4.0), rec(1, 0.7, 4.0), rec(2, 0.8, 5.0, spec_id="id0"), rec(3, 0.6, 4.5),
          rec(4, 0.9, 6.0, feasible=False), rec(5, 0.75, 4.8), rec(6, 0.75, 4.8, status=Status.REUSED)]
    front = pareto_front(rs)
    # 0 and 1 tie (different specs, equal values): both kept, as optuna keeps them; 2 repeats spec id0 (the
    # first trained copy counts); 3 is dominated; 4 is over budget; 6 is a reused copy of 5.
    assert [r.number for r in front] == [0, 1, 5]
    assert [r.number for r in pareto_front(reversed(rs))] == [0, 1, 5]
    three = [rec(0, 0.7, 4.0, params=20_000_000), rec(1, 0.7, 4.0, params=10_000_000), rec(2, 0.6, 3.0, params=9)]
    assert [r.number for r in pareto_front(three, ("top1", "gflops", "params_m"))] == [2, 1]
    assert [r.number for r in pareto_front(three, ("top1",))] == [0, 1]
    assert pareto_front([]) == [] and pareto_front([rec(0, 0.5, 1.0, status=Status.DIVERGED)]) == []


def test_hypervolume_is_the_staircase_area_and_grows_by_trial() -> None:
    rs = [rec(0, 0.6, 4.0), rec(1, 0.5, 3.0), rec(2, 0.55, 4.5), rec(3, 0.8, 6.0), rec(4, 0.9, 7.0, feasible=False)]
    reference = reference_point(rs)
    assert reference == (0.0, pytest.approx(6.6))
    # front (gflops, top1): (3, .5), (4, .6), (6, .8); area up to GFLOPs 6.6 and top-1 0
    area = (4 - 3) * 0.5 + (6 - 4) * 0.6 + (6.6 - 6) * 0.8
    assert hypervolume(rs, reference) == pytest.approx(area)
    history = [h["hypervolume"] for h in hypervolume_history(rs, reference)]
    assert history == sorted(history) and history[-1] == pytest.approx(area)
    assert history[0] == pytest.approx((6.6 - 4) * 0.6)
    assert hypervolume(rs, (0.0, 2.0)) == 0.0  # nothing cheaper than the reference


def test_pick_takes_the_best_front_record_within_budget_or_says_why_not() -> None:
    rs = [rec(0, 0.6, 4.0), rec(1, 0.5, 3.0), rec(2, 0.8, 6.0)]
    assert pick(rs, 5.0).number == 0 and pick(rs, 100).number == 2 and pick(rs, 5.0, min_top1=0.55).number == 0
    with pytest.raises(StudyError, match=r"no architecture within 2\.0 GFLOPs .*cheapest trained one needs 3\.000"):
        pick(rs, 2.0)
    with pytest.raises(StudyError, match="lower --min-top1"):
        pick(rs, 5.0, min_top1=0.7)


def get_json(app: Any, path: str) -> Any:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda code, headers, exc=None: status.append(code) or io.BytesIO().write))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def dashboard_best(app: Any, name: str) -> list[int]:
    studies = get_json(app, "/api/studies")["study_summaries"]
    study_id = next(s["study_id"] for s in studies if s["study_name"] == name)
    return sorted(t["number"] for t in get_json(app, f"/api/studies/{study_id}")["best_trials"])


def test_every_reader_lists_the_same_front(mixed, attnas, tmp_path: Path) -> None:
    url, study = mixed
    backfill_constraints(study)  # what `attnas dashboard` does first; a no-op on contract-format trials
    study = optuna.load_study(study_name="mixed", storage=url)  # not the cached copy of the finished trials
    expected = [r.number for r in pareto_front(records(study))]
    assert expected == FRONT

    done = attnas("front", "--storage", url, "--study", "mixed", "--json")
    assert done.returncode == 0, done.stderr
    cli_front = json.loads(done.stdout)
    assert [r["number"] for r in cli_front] == FRONT
    assert cli_front == [r.to_dict() for r in pareto_front(records(study))]

    picked = []
    for r in cli_front:  # under each front member's own GFLOPs, pick returns exactly that member
        spec_file = tmp_path / f"pick-{r['number']}.json"
        done = attnas("pick", "--storage", url, "--study", "mixed", "--max-gflops", str(r["gflops"]),
                      "--out", str(spec_file), "--json")
        assert done.returncode == 0, done.stderr
        picked.append(json.loads(done.stdout)["number"])
        assert json.loads(spec_file.read_text()) == r["spec"]
    assert picked == FRONT
    cheaper = attnas("pick", "--storage", url, "--study", "mixed", "--max-gflops", "4.15")  # only the diverged one
    assert cheaper.returncode == 1 and "no architecture within 4.15 GFLOPs" in cheaper.stderr

    data = report_data(records(study))
    assert [r["number"] for r in data["front"]] == FRONT
    assert [row["trial"] for row in front_rows(data)] == FRONT
    figure = plots.pareto_figure(data)
    drawn = {trace.name.split(" (")[0]: list(trace.customdata) for trace in figure.data}
    assert drawn["Pareto front"] == FRONT
    assert not OFF & set(drawn["Pareto front"]) and set(drawn["trained"]) == {2}
    page = report_html(data)
    table = page[page.index("<h2>Pareto front") : page.index("<h2>Trials that did not train")]
    assert [int(n) for n in re.findall(r"<td>(\d+)</td></tr>", table)] == FRONT

    assert sorted(t.number for t in study.best_trials) == FRONT  # optuna's constraint-aware front
    assert dashboard_best(dashboard_app(url), "mixed") == FRONT  # optuna-dashboard's API, as served


def test_status_lists_counts_and_each_failed_trials_error_line(mixed, attnas) -> None:
    url, _ = mixed
    done = attnas("status", "--storage", url, "--study", "mixed")
    assert done.returncode == 0, done.stderr
    assert "trial 6 failed: trial 6: RuntimeError: CUDA error: out of memory" in done.stdout
    for status, n in (("trained", 3), ("over budget", 1), ("reused", 1), ("diverged", 1), ("failed", 1)):
        assert any(line.split("│")[1:3] and [c.strip() for c in line.split("│")[1:3]] == [status, str(n)]
                   for line in done.stdout.splitlines()), (status, done.stdout)
    data = json.loads(attnas("status", "--storage", url, "--study", "mixed", "--json").stdout)
    assert data["counts"] == {"trained": 3, "over_budget": 1, "reused": 1, "diverged": 1, "failed": 1}
    assert [(r["number"], r["error"]) for r in data["failed"]] == [(6, "trial 6: RuntimeError: CUDA error: "
                                                                       "out of memory")]


@pytest.mark.parametrize("command", [["status"], ["front", "--json"], ["pick", "--max-gflops", "5"],
                                     ["report", "--json"], ["dashboard", "--port", "1"]])
@pytest.mark.parametrize("form", ["sqlite:///{}/missing/study.db", "journal:///{}/missing/study.log"])
def test_read_commands_on_a_missing_storage_create_nothing(attnas, tmp_path: Path, command, form) -> None:
    url = form.format(tmp_path)
    done = attnas(*command, "--storage", url, "--study", "x", cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no study storage at ") and "attnas create" in lines[0]
    assert not (tmp_path / "missing").exists() and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_trial_attnas_did_not_write_is_read_from_its_values() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.optimize(lambda t: (0.5, 2.0), n_trials=1)
    r = record(study.trials[0])
    assert (r.status, r.top1, r.gflops, r.spec, r.name) == (Status.TRAINED, 0.5, 2.0, None, "trial 0")
    assert not math.isnan(hypervolume([r], (0.0, 3.0)))
