"""Optuna studies over attention placements: study files, storage, workers, results, reports, the CLI.

The import rule of attnas, stated once: imports go at the top of a module, except a lazy import (inside the
function that needs it; under TYPE_CHECKING for annotations) where a top-level one would make `attnas --help`
slow, i.e. anything that pulls in torch (search_space, trainer, objectives, fvcore), optuna, scipy
(studies.fidelity) or a heavy optional library (wandb, plotly, submitit, optuna_dashboard) from a module the
CLI imports at start-up (studies.config and what it imports, studies.storage, studies.cli.*). Modules only a
running worker or report imports (studies.worker, studies.report, ...) import at the top.
Figures: benchmarks/RESULTS.md ("attnas --help"); tests/studies/test_storage.py checks the start-up imports.
"""

from studies.config import StudyConfig, StudyError, read_file

__all__ = ["StudyConfig", "StudyError", "read_file"]
