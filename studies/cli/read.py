"""Commands that read a study: status, front, pick, report, dashboard.

All of them start from `studies.records.records(study)`, so they agree with each other and with the
report; `--json` prints `TrialRecord.to_dict()` rows (or `report.report_data`). None of them creates a
storage file or folder that is not there: a mistyped path is an error, not a new empty study.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import storage as st
from ..config import StudyError
from .app import Storage, StudyFile, StudyName, _config, _existing, app, out

Json = Annotated[bool, typer.Option("--json", help="Print JSON (records as `attnas front --json` shows them).")]
GflopsTol = Annotated[float, typer.Option(
    "--gflops-tol", help="Fold front members whose GFLOPs are within this fraction of a more accurate one's "
    "(shown as 'same cost as'); 0 shows the exact front.")]


def existing_study(study_file: Path | None, storage: str | None, name: str | None) -> tuple[Any, Any]:
    """The study a read command looks at; refuses a storage file that does not exist (creating nothing)."""
    require_storage(storage_info(study_file, storage))
    return _existing(study_file, storage, name)


def storage_info(study_file: Path | None, storage: str | None) -> st.StorageInfo:
    if storage:
        return st.parse(storage)
    if study_file is None:
        raise StudyError("give the study file, or both --storage URL and --study NAME")
    return st.resolve(_config(study_file))


def require_storage(info: st.StorageInfo) -> None:
    """A local storage (SQLite/journal file) must exist before a read command opens it."""
    if info.path is not None and not info.path.is_file():
        raise StudyError(f"no study storage at {info.path}; check --storage (or the file's `storage`), "
                         "or create the study first with `attnas create STUDY.toml`")


@app.command()
def status(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
           as_json: Json = False) -> None:
    """Trials per status (trained, over budget, reused, diverged, failed, ...) and each failure's error."""
    from ..environment import where
    from ..records import Status, counts, environments, failure_text, records
    from ..seeding import outlook_text
    from ..trunks import cost_line, cost_rows
    from .provenance import environment_block

    s, config = existing_study(study_file, storage, study)
    trials = s.get_trials(deepcopy=False)
    rs = records(s, trials)
    failed = [r for r in rs if r.status in (Status.FAILED, Status.INTERRUPTED)]
    trunks = cost_rows(s, rs)
    running = [r for r in rs if r.status == Status.RUNNING]
    seeds = seeding_outlook(s, config, trials, rs)
    if as_json:
        print(json.dumps({"study": s.study_name, "counts": counts(rs), "failed": [r.to_dict() for r in failed],
                          "running": [r.to_dict() for r in running], "environment": environments(s),
                          "trunks": trunks, "seeding": seeds and asdict(seeds)}, indent=2))
        return
    table = Table(title=f"study {s.study_name}")
    for column in ("status", "trials"):
        table.add_column(column)
    for name, n in counts(rs).items():
        table.add_row(name.replace("_", " "), str(n))
    out.print(table)
    for r in failed:
        out.print(f"trial {r.number} {r.status.value}: {failure_text(r)}", markup=False, soft_wrap=True)
    for row in trunks:
        out.print(cost_line(row), markup=False, soft_wrap=True)
    for r in running:
        out.print(f"trial {r.number} running on {where(r.worker)}: {r.name}", markup=False, soft_wrap=True)
    if seeds is not None:
        out.print(outlook_text(seeds), markup=False, soft_wrap=True)
    if config:
        out.print(f"total: {config.trials}; objectives: {', '.join(config.objective_names)}; "
                  f"budget: {f'{config.max_gflops} GFLOPs' if config.max_gflops else 'none'}")
    environment_block(s)


def seeding_outlook(study: Any, config: Any, trials: list[Any], rs: list[Any]) -> Any:
    """The auto seeds' `seeding.Outlook` of a study from its trials and their records, as `status` read them
    (None unless its schedule says `seeds = "auto"`)."""
    if config is None or not config.schedule.auto_seeds:
        return None
    from .. import queue
    from ..fidelity import study_holdout_images
    from ..seeding import outlook

    fresh = queue.architectures(study._storage, study) < config.space.size()  # else empty slots stay queued
    return outlook(trials, study_holdout_images(study), config.schedule.max_seeds, config.objective_names, fresh,
                   rs)


@app.command()
def front(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
          as_json: Json = False, gflops_tol: GflopsTol = 0.02) -> None:  # records.GFLOPS_TOL
    """The Pareto front (trained trials within budget, one per architecture), cheapest first."""
    from ..records import check_tolerance, objectives_of, records, shown_front

    check_tolerance(gflops_tol)
    s, _ = existing_study(study_file, storage, study)
    if as_json:  # the shown members' records (`--gflops-tol 0`: every member of the exact front)
        print(json.dumps([r.to_dict() for r in shown_front(records(s), objectives_of(s), gflops_tol)], indent=2))
    else:
        front_table(s, gflops_tol)


def front_rows(study: Any, gflops_tol: float | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The shown front as the table shows it, one dict per member (full name, top-1, ±, seeds, GFLOPs, params,
    ties, members of the same cost folded into it, trial), cheapest first, and its noise
    (studies.fidelity.front_noise)."""
    from ..fidelity import study_front_noise
    from ..records import GFLOPS_TOL, objectives_of, pareto_front, records, same_cost

    tol = GFLOPS_TOL if gflops_tol is None else gflops_tol
    rs = records(study)
    exact = pareto_front(rs, objectives_of(study))
    folded = same_cost(exact, objectives_of(study), tol)
    shown = [r for r in exact if r.number in folded]
    noise = study_front_noise(study, shown, tol, rs)  # pooled seed σ / √runs, else the held-out set's binomial error
    rows = [{"name": r.name, "top1": r.top1, "se": noise["se"].get(r.number), "seeds": max(1, len(r.seeds)),
             "gflops": r.gflops, "params_m": r.params_m, "ties": noise["ties"].get(r.number, []),
             "same_cost": list(folded[r.number]), "trial": r.number} for r in shown]
    return rows, {**noise, "gflops_tol": tol}


FRONT_COLUMNS = ("name", "top-1", "± (pts)", "seeds", "GFLOPs", "params (M)", "within noise of", "same cost as",
                 "trial")
LEFT = ("name", "within noise of", "same cost as")


def front_cells(row: dict[str, Any]) -> list[str]:
    se, params = row["se"], row["params_m"]
    return [row["name"], f"{100 * (row['top1'] or 0):.1f}%", "-" if se is None else f"{100 * se:.1f}",
            str(row["seeds"]), f"{row['gflops']:.3f}", f"{params:.2f}" if params is not None else "-",
            ", ".join(f"#{n}" for n in row["ties"]) or "-", ", ".join(f"#{n}" for n in row["same_cost"]) or "-",
            str(row["trial"])]


def front_notes(rows: list[dict[str, Any]], noise: dict[str, Any]) -> list[str]:
    notes = []
    if any(row["ties"] for row in rows):
        notes.append(f"'within noise of': top-1 differences under 1.96 standard errors ({noise['source']}); "
                     "`attnas fidelity` retrains the front with seeds to tell them apart")
    if noise.get("near"):
        notes.append(f"within noise of the front, on none: {', '.join(f'#{n}' for n in noise['near'])} (no trial at "
                     "most as costly is better by 1.96 standard errors): not separated from the front, each may be "
                     "the better network; more seeds can tell (seeds = \"auto\" gives them)")
    if any(row["same_cost"] for row in rows):
        notes.append(f"'same cost as': front members within {100 * noise['gflops_tol']:g}% of this one's GFLOPs and "
                     "less accurate, folded into it (`--gflops-tol 0` lists them)")
    return notes


def front_table(study: Any, gflops_tol: float | None = None, log_format: str = "auto") -> None:
    """Print the study's shown Pareto front (also what `attnas search` ends with), every name in full: a rich
    table on a terminal (a long name folds, never cut), a plain-text table anywhere else, one JSON line with
    `json`."""
    from ..logs import Lines, json_event, plain_table, resolve

    rows, noise = front_rows(study, gflops_tol)
    title = f"Pareto front of {study.study_name}"
    notes = front_notes(rows, noise)
    fmt = resolve(log_format, out.is_terminal)
    if fmt == "json":
        Lines(None, "json").write(json_event("front", study=study.study_name, members=rows, near=noise["near"]))
        return
    if fmt == "plain":
        right = [c not in LEFT for c in FRONT_COLUMNS]
        lines = [f"{title} ({len(rows)} member(s))", *plain_table(FRONT_COLUMNS, [front_cells(r) for r in rows], right)]
        print("\n".join([*lines, *notes]), flush=True)
        return
    table = Table(title=title)
    for column in FRONT_COLUMNS:
        table.add_column(column, justify="left" if column in LEFT else "right", overflow="fold")
    for row in rows:
        table.add_row(*front_cells(row))
    out.print(table)
    for note in notes:
        out.print(note)


def budget_option(value: float) -> float:
    """`--max-gflops`, checked while parsing (exit 2): NaN, infinity and zero or less are no budget."""
    if not math.isfinite(value) or value <= 0:
        raise typer.BadParameter(f"{value} is not a budget; give a positive number of GFLOPs, e.g. 1.5")
    return value


def fraction_option(value: float | None) -> float | None:
    """`--min-top1`, checked while parsing (exit 2): top-1 is recorded as a fraction, so 80 would match nothing."""
    if value is None:
        return None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        hint = f"; for {value:g} % give {value / 100:g}" if 1.0 < value <= 100.0 else ""
        raise typer.BadParameter(f"{value} is not a top-1 fraction between 0 and 1{hint}")
    return value


@app.command()
def pick(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
         max_gflops: Annotated[float, typer.Option("--max-gflops", callback=budget_option,
                                                   help="FLOP budget (GFLOPs).")] = ...,
         min_top1: Annotated[float | None, typer.Option("--min-top1", callback=fraction_option,
                                                        help="Minimum proxy top-1 (0..1).")] = None,
         out_file: Annotated[Path | None, typer.Option("--out", help="Spec JSON path.")] = None,
         as_json: Json = False) -> None:
    """The best architecture of the front under a budget, written as spec JSON (the interchange format)."""
    from ..records import pick as best
    from ..records import records

    s, _ = existing_study(study_file, storage, study)
    chosen = best(records(s), max_gflops, min_top1)
    if chosen.spec is None:
        raise StudyError(f"trial {chosen.number} has no readable spec; pick another budget")
    spec = chosen.spec
    path = out_file or Path(f"{spec.name}.json")
    path.write_text(spec.to_json(indent=2) + "\n")
    if as_json:
        print(json.dumps({**chosen.to_dict(), "written": str(path)}, indent=2))
        return
    out.print(f"{spec.name}: top-1 {100 * (chosen.top1 or 0):.1f}%, {chosen.gflops:.3f} GFLOPs "
              f"(trial {chosen.number})", markup=False, soft_wrap=True)
    out.print(f"wrote {path}; build it with:\n  from search_space import ArchSpec, build_model\n"
              f"  model = build_model(ArchSpec.from_json(open({str(path)!r}).read()), num_classes=1000)\n"
              f"or retrain it and report its val/ accuracy: attnas train {path} --data DIR --val", markup=False,
              soft_wrap=True)


@app.command()
def report(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
           out_file: Annotated[Path, typer.Option("--out")] = Path("attnas-report.html"),
           as_json: Annotated[bool, typer.Option("--json", help="Print the data the page draws; no page.")] = False,
           gflops_tol: GflopsTol = 0.02) -> None:  # records.GFLOPS_TOL
    """Write the self-contained HTML report (or print its data with --json)."""
    from ..records import check_tolerance
    from ..report import study_report_data, write_report

    check_tolerance(gflops_tol)
    s, config = existing_study(study_file, storage, study)
    budget = config.max_gflops if config is not None else None
    if as_json:
        print(json.dumps(study_report_data(s, budget, gflops_tol), indent=2))
    else:
        out.print(f"report: {write_report(s, out_file, budget, gflops_tol)}")


@app.command()
def dashboard(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
              host: Annotated[str, typer.Option(help="Bind address (only this machine by default).")] =
              "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard on the study's storage (blocking)."""
    from ..dashboard import serve

    info = storage_info(study_file, storage)
    require_storage(info)
    config = _config(study_file) if study_file is not None else None
    out.print(f"dashboard for {st.mask(info.url)} on http://{host}:{port}")
    serve(info, host=host, port=port, artifacts=st.artifact_dir(config, info))
