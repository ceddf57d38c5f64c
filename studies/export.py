"""`attnas export`: a study as a self-contained folder that someone without the storage can read and re-run.

The folder holds (FILES): the study file as stored with the study (YAML, which `attnas` reads; its `storage` and
`artifacts` left out, so a rerun goes to a fresh storage of its own), every trial record as JSON lines
(`TrialRecord.to_dict()`, what `attnas front --json` prints), each distinct spec as JSON, the workers'
environments and the data summary, the study's own attributes, and the report (its page and its data).
Everything comes from the storage through studies.records; nothing reads the dataset.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import optuna

from .config import StudyError
from .records import data_summary, environments, objectives_of, records
from .report import report_html, study_report_data

STUDY_FILE, TRIALS, SPECS, ENVIRONMENT, STUDY, REPORT, REPORT_DATA, README = (
    "study.yaml", "trials.jsonl", "specs", "environment.json", "study.json", "report.html", "report.json",
    "README.txt")
FILES = (STUDY_FILE, TRIALS, SPECS, ENVIRONMENT, STUDY, REPORT, REPORT_DATA, README)
#: Study-file keys left out: where the original study lived, which a rerun must not resume or write into.
LOCAL_KEYS = ("storage", "artifacts")


def export(study: optuna.Study, folder: Path, force: bool = False) -> dict[str, int]:
    """Write the folder (FILES); refuse a non-empty one unless `force`. Returns what was written (counts)."""
    folder = Path(folder)
    check_target(folder, force)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / SPECS).is_dir():
        shutil.rmtree(folder / SPECS)  # --force: no spec of an earlier export stays behind
    rs = records(study)
    stored = study.user_attrs.get("attnas.config")
    if isinstance(stored, dict):
        write_text(folder / STUDY_FILE, study_file_text(stored))
    write_text(folder / TRIALS, "".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in rs))
    specs = {r.spec_id: r.spec for r in rs if r.spec is not None and r.spec_id}
    (folder / SPECS).mkdir()
    for spec_id, spec in specs.items():
        write_text(folder / SPECS / f"{spec_id}.json", spec.to_json(indent=2) + "\n")
    envs = environments(study)
    write_json(folder / ENVIRONMENT, {"workers": envs, "data": data_summary(study)})
    write_json(folder / STUDY, study_attributes(study))
    data = study_report_data(study)
    write_json(folder / REPORT_DATA, data)
    write_text(folder / REPORT, report_html(data))
    write_text(folder / README, readme(study.study_name, bool(isinstance(stored, dict))))
    return {"trials": len(rs), "specs": len(specs), "workers": len(envs)}


def check_target(folder: Path, force: bool) -> None:
    """A folder that is not there or empty is fine; a file, or a folder with something in it, needs --force."""
    if folder.exists() and not folder.is_dir():
        raise StudyError(f"export: {folder} is a file; give a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise StudyError(f"export: {folder} exists and is not empty; choose a new folder or add --force")


def study_file_text(stored: dict[str, Any]) -> str:
    """The stored study file as YAML (JSON-safe values), without where the original lived."""
    import yaml

    content = json.loads(json.dumps({k: v for k, v in stored.items() if k not in LOCAL_KEYS}))
    return ("# exported by `attnas export`: the study file stored with the study (storage left out: a rerun\n"
            "# writes a storage of its own; give one with --storage)\n" + yaml.safe_dump(content, sort_keys=False))


def study_attributes(study: optuna.Study) -> dict[str, Any]:
    """The study's name, directions, objectives and user attrs (attnas.version, attnas.fidelity, ...)."""
    return {"name": study.study_name, "directions": [d.name.lower() for d in study.directions],
            "objectives": list(objectives_of(study)), "user_attrs": json.loads(json.dumps(study.user_attrs))}


def readme(name: str, has_file: bool) -> str:
    rerun = (f"Re-run it into a fresh storage:\n  attnas search {STUDY_FILE} --storage sqlite:///rerun.db\n"
             if has_file else "The study stored no study file (made outside attnas), so it cannot be re-run.\n")
    return (f"Study {name}, exported by `attnas export`.\n\n"
            f"{STUDY_FILE}        the study file\n{TRIALS}      every trial record (as `attnas front --json` prints)\n"
            f"{SPECS}/            each architecture's spec JSON, named by spec_id (build_model reads it)\n"
            f"{ENVIRONMENT}  each worker's versions, device, threads, host; the data summary\n"
            f"{STUDY}        the study's name, objectives and attributes\n"
            f"{REPORT} / {REPORT_DATA}  the report page and its data\n\n" + rerun)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path: Path, text: str) -> None:
    """Written next to its final name, then renamed: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
