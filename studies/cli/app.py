"""The `attnas` Typer app, the options its commands share, and how they find a study.

Every user-fixable failure (bad study file, missing dataset, unreachable database, bad spec) ends as one
line `error: ...` on stderr and exit status 1, with any storage password masked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from .. import config as cfg
from .. import storage as st
from ..config import StudyError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Search where SE/NL/GC attention goes in a ResNet (Optuna studies).")
out = Console()
err = Console(stderr=True)

Trials = Annotated[int | None, typer.Option("--trials", help="Total trials of the study (overrides the file).")]
Storage = Annotated[str | None, typer.Option("--storage", help="Storage URL (overrides the file).")]
NoWandb = Annotated[bool, typer.Option("--no-wandb", help="Do not log to Weights & Biases.")]
StudyFile = Annotated[Path | None, typer.Argument(help="The study file (.toml/.yaml).")]
StudyName = Annotated[str | None, typer.Option("--study", help="Study name (with --storage, no file).")]


def _config(path: Path, trials: int | None = None, storage: str | None = None,
            no_wandb: bool = False) -> cfg.StudyConfig:
    return cfg.read_file(path).with_overrides(trials=trials, storage=storage, no_wandb=no_wandb)


def _existing(path: Path | None, storage: str | None, name: str | None) -> tuple[Any, cfg.StudyConfig | None]:
    """The study a read-side command looks at: from the file, or from --storage and --study."""
    if path is not None:
        config = _config(path, storage=storage)
        info = st.resolve(config)
        name = name or config.name
    elif storage and name:
        config, info = None, st.parse(storage)
    else:
        raise StudyError("give the study file, or both --storage URL and --study NAME")
    study = st.load(st.open_storage(info), name)
    return study, config or st.stored_config(study)


