"""Optuna studies over attention placements: study files, storage, workers, results, reports, the CLI.

Imports stay lazy (no torch here) so read-side commands such as `attnas status` start fast.
"""

from studies.config import StudyConfig, StudyError, read_file

__all__ = ["StudyConfig", "StudyError", "read_file"]
