"""Optuna studies over attention placements: study files, storage, workers, results, reports, the CLI.

The import rule of attnas, stated once: imports go at the top of a module, except a lazy import (inside the
function that needs it) where a top-level one would make `attnas --help` slow, i.e. anything that pulls in
torch (search_space, trainer, objectives, fvcore) or a heavy optional library (wandb, plotly, submitit,
optuna_dashboard) from a module the CLI imports at start-up (studies.config, studies.storage, studies.cli.*).
Modules only a running worker or report imports (studies.worker, studies.report, ...) import at the top.
Figures: benchmarks/RESULTS.md ("attnas --help").
"""

from studies.config import StudyConfig, StudyError, read_file

__all__ = ["StudyConfig", "StudyError", "read_file"]
