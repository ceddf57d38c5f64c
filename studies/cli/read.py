"""Commands that read a study: status, front, pick, report, dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import storage as st
from ..config import StudyError
from .app import Storage, StudyFile, StudyName, _config, _existing, app, out


@app.command()
def status(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None) -> None:
    """Trials per state and the study's total."""
    from ..results import counts

    s, config = _existing(study_file, storage, study)
    table = Table(title=f"study {s.study_name}")
    for column in ("state", "trials"):
        table.add_column(column)
    for state, n in sorted(counts(s).items()):
        table.add_row(state, str(n))
    out.print(table)
    if config:
        out.print(f"total: {config.trials}; objectives: {', '.join(config.objective_names)}; "
                  f"budget: {config.max_gflops or 'none'} GFLOPs")


@app.command()
def front(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
          as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows instead.")] = False) -> None:
    """The Pareto front (feasible, trained trials): name, top-1, GFLOPs, params, trial."""
    from ..results import front_rows

    s, _ = _existing(study_file, storage, study)
    if as_json:
        print(json.dumps([r.to_dict() for r in front_rows(s)], indent=2))
    else:
        _front_table(s)


def _front_table(study: Any) -> None:
    from ..results import front_rows

    table = Table(title=f"Pareto front of {study.study_name}")
    for column in ("name", "top-1", "GFLOPs", "params (M)", "trial"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for r in front_rows(study):
        table.add_row(r.name, f"{100 * (r.top1 or 0):.1f}%", f"{r.gflops:.3f}",
                      f"{r.params_m:.2f}" if r.params_m is not None else "-", str(r.trial))
    out.print(table)


@app.command()
def pick(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
         max_gflops: Annotated[float, typer.Option("--max-gflops", help="FLOP budget (GFLOPs).")] = ...,
         min_top1: Annotated[float | None, typer.Option("--min-top1", help="Minimum proxy top-1 (0..1).")] = None,
         out_file: Annotated[Path | None, typer.Option("--out", help="Spec JSON path.")] = None) -> None:
    """The best architecture under a budget, written as spec JSON (the interchange format)."""
    from search_space import ArchSpec

    from ..results import pick as best

    s, _ = _existing(study_file, storage, study)
    row = best(s, max_gflops, min_top1)
    spec = ArchSpec.from_dict(row.spec or {})
    path = out_file or Path(f"{spec.name}.json")
    path.write_text(spec.to_json(indent=2) + "\n")
    out.print(f"{spec.name}: top-1 {100 * (row.top1 or 0):.1f}%, {row.gflops:.3f} GFLOPs (trial {row.trial})")
    out.print(f"wrote {path}; build it with:\n  from search_space import ArchSpec, build_model\n"
              f"  model = build_model(ArchSpec.from_json(open({str(path)!r}).read()), num_classes=1000)\n"
              f"or retrain it and report its val/ accuracy: attnas train {path} --data DIR --val")


@app.command()
def report(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
           out_file: Annotated[Path, typer.Option("--out")] = Path("attnas-report.html")) -> None:
    """Write the self-contained HTML report."""
    from ..report import write_report

    s, _ = _existing(study_file, storage, study)
    out.print(f"report: {write_report(s, out_file)}")


@app.command()
def dashboard(study_file: StudyFile = None, storage: Storage = None, study: StudyName = None,
              host: Annotated[str, typer.Option(help="Bind address (only this machine by default).")] =
              "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard on the study's storage (blocking)."""
    from ..dashboard import serve

    if study_file is None and storage is None:
        raise StudyError("give the study file or --storage URL")
    config = _config(study_file) if study_file is not None else None
    info = st.parse(storage) if storage else st.resolve(config)  # type: ignore[arg-type]
    out.print(f"dashboard for {st.mask(info.url)} on http://{host}:{port}")
    serve(info, host=host, port=port, artifacts=st.artifact_dir(config, info))


