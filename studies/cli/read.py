"""Commands that read a study: status, front, pick, report, dashboard.

All of them start from `studies.records.records(study)`, so they agree with each other and with the
report; `--json` prints `TrialRecord.to_dict()` rows (or `report.report_data`). None of them creates a
storage file or folder that is not there: a mistyped path is an error, not a new empty study.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import storage as st
from ..config import StudyError
from .app import Storage, StudyFile, StudyName, _config, _existing, app, out

Json = Annotated[bool, typer.Option("--json", help="Print JSON (records as `attnas front --json` shows them).")]


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
    from ..records import Status, counts, records

    s, config = existing_study(study_file, storage, study)
    rs = records(s)
    failed = [r for r in rs if r.status in (Status.FAILED, Status.INTERRUPTED)]
    running = [r for r in rs if r.status == Status.RUNNING]
    if as_json:
        print(json.dumps({"study": s.study_name, "counts": counts(rs), "failed": [r.to_dict() for r in failed],
                          "running": [r.to_dict() for r in running]}, indent=2))
        return
    table = Table(title=f"study {s.study_name}")
    for column in ("status", "trials"):
        table.add_column(column)
    for name, n in counts(rs).items():
        table.add_row(name.replace("_", " "), str(n))
    out.print(table)
    for r in failed:
        out.print(f"trial {r.number} {r.status.value}: {r.error or 'no error recorded'}", markup=False)
    for r in running:
        out.print(f"trial {r.number} running on {where(r.worker)}: {r.name}", markup=False)
    if config:
        out.print(f"total: {config.trials}; objectives: {', '.join(config.objective_names)}; "
                  f"budget: {config.max_gflops or 'none'} GFLOPs")


@app.command()
def front(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
          as_json: Json = False) -> None:
    """The Pareto front (trained trials within budget, one per architecture), cheapest first."""
    from ..records import objectives_of, pareto_front, records

    s, _ = existing_study(study_file, storage, study)
    if as_json:
        print(json.dumps([r.to_dict() for r in pareto_front(records(s), objectives_of(s))], indent=2))
    else:
        front_table(s)


def front_table(study: Any) -> None:
    """Print the study's Pareto front as a table (also what `attnas search` ends with)."""
    from ..fidelity import study_front_noise
    from ..records import objectives_of, pareto_front, records

    noise = study_front_noise(study)  # seeds' standard error, else the held-out set's binomial error
    table = Table(title=f"Pareto front of {study.study_name}")
    for column in ("name", "top-1", "± (pts)", "GFLOPs", "params (M)", "within noise of", "trial"):
        table.add_column(column, justify="left" if column in ("name", "within noise of") else "right")
    for r in pareto_front(records(study), objectives_of(study)):
        se = noise["se"].get(r.number)
        ties = ", ".join(f"#{n}" for n in noise["ties"].get(r.number, []))
        table.add_row(r.name, f"{100 * (r.top1 or 0):.1f}%", "-" if se is None else f"{100 * se:.1f}",
                      f"{r.gflops:.3f}", f"{r.params_m:.2f}" if r.params_m is not None else "-", ties or "-",
                      str(r.number))
    out.print(table)
    if any(noise["ties"].values()):
        out.print(f"'within noise of': top-1 differences under 1.96 standard errors ({noise['source']}); "
                  "`attnas fidelity` retrains the front with seeds to tell them apart")



@app.command()
def pick(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
         max_gflops: Annotated[float, typer.Option("--max-gflops", help="FLOP budget (GFLOPs).")] = ...,
         min_top1: Annotated[float | None, typer.Option("--min-top1", help="Minimum proxy top-1 (0..1).")] = None,
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
              f"(trial {chosen.number})", markup=False)
    out.print(f"wrote {path}; build it with:\n  from search_space import ArchSpec, build_model\n"
              f"  model = build_model(ArchSpec.from_json(open({str(path)!r}).read()), num_classes=1000)\n"
              f"or retrain it and report its val/ accuracy: attnas train {path} --data DIR --val", markup=False)


@app.command()
def report(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
           out_file: Annotated[Path, typer.Option("--out")] = Path("attnas-report.html"),
           as_json: Annotated[bool, typer.Option("--json", help="Print the data the page draws; no page.")] = False,
           ) -> None:
    """Write the self-contained HTML report (or print its data with --json)."""
    from ..report import study_report_data, write_report

    s, config = existing_study(study_file, storage, study)
    budget = config.max_gflops if config is not None else None
    if as_json:
        print(json.dumps(study_report_data(s, budget), indent=2))
    else:
        out.print(f"report: {write_report(s, out_file, budget)}")


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
