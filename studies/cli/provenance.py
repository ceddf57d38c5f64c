"""Commands and blocks about how a study was made: `attnas export`, and the environment block `status` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..config import StudyError
from .app import Storage, StudyName, app, err, out
from .read import existing_study

Force = Annotated[bool, typer.Option("--force", help="Write into a folder that is not empty.")]
Paths = Annotated[list[Path], typer.Argument(metavar="[STUDY_FILE] DIR",
                                             help="The study file (or --storage and --study) and the folder.")]


@app.command()
def export(paths: Paths, storage: Storage = None, study: StudyName = None, force: Force = False) -> None:
    """Write a self-contained folder: study file, trial records (JSON lines), specs, environment, report."""
    from ..export import check_target
    from ..export import export as write_folder

    if len(paths) > 2:
        raise StudyError("export: give at most a study file and a folder (or --storage URL --study NAME DIR)")
    study_file, folder = (paths[0], paths[1]) if len(paths) == 2 else (None, paths[0])
    check_target(folder, force)  # before the storage is opened: a refusal costs nothing
    s, _ = existing_study(study_file, storage, study)
    done = write_folder(s, folder, force=force)
    out.print(f"exported study {s.study_name!r}: {done['trials']} trial record(s), {done['specs']} spec(s), "
              f"{done['workers']} worker environment(s) -> {folder}", markup=False, soft_wrap=True)


def environment_block(study: Any) -> None:
    """The environment block of `attnas status`: one column per distinct setup (a single one when every worker
    ran the same), one row per fact; facts that differ between setups are marked ≠ (red for versions/device)."""
    from ..plots import ENV_COLUMNS, env_cell
    from ..records import environments, setups

    env = setups(environments(study))
    if not env["rows"]:
        out.print("environment: not recorded (workers of an attnas older than this record)")
        return
    table = Table(title=f"environment of {env['workers']} worker(s)")
    table.add_column("")
    for number in range(1, len(env["rows"]) + 1):
        table.add_column(f"setup {number}" if len(env["rows"]) > 1 else "all workers")
    for column in ENV_COLUMNS:
        mark = " ≠" if column in env["differ"] else ""
        table.add_row(column.replace("_", " ") + mark, *(env_cell(row, column) for row in env["rows"]),
                      style="bold red" if column in env["mixed"] else None)
    out.print(table)
    if env["mixed"]:
        err.print(f"warning: workers differ in {', '.join(env['mixed'])}; a mixed setup may not reproduce "
                  "the study", markup=False)
