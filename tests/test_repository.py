"""The repository is self-contained: no tracked file points a reader to a file that is not in it.

Why: docstrings once sent readers to a notes file on a developer's machine (a CONTRACT.md under a notes folder); the
contract now lives in docs/CONTRACT.md. `git grep` over the tracked files finds (1) paths under roots that
only exist on someone's machine, and (2) repository paths (a docs or package folder, then a file name) that name no
file here. Illustrative paths in examples (`/data/imagenet`, `/shared/attnas/...`) and system paths
(`/dev/shm`, `/proc`, `/usr/share/datasets`) are not references to files a reader should find, so they pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Roots of personal or build-machine folders, and the notes file that used to hold the contract.
MACHINE_PATHS = r"(/work/|/home/|/Users/|/root/|/scratch/|notes/CONTRACT)"
#: Repository paths as prose names them: a package or docs folder, then a file with an extension.
REPO_PATH = re.compile(r"\b(?:docs|studies|trainer|objectives|search_space|benchmarks|tests)/[\w./-]+"
                       r"\.(?:py|md|toml|yaml|txt|sh)\b")


def git_grep(*args: str) -> list[str]:
    """`git grep` over tracked files: the matching lines as `path:line:text` (empty when none match)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to grep")
    proc = subprocess.run(["git", "grep", "-nI", *args], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr  # 1: no match
    return proc.stdout.splitlines()


def test_no_tracked_file_points_outside_the_repository() -> None:
    hits = git_grep("-E", MACHINE_PATHS, "--", ".", ":!tests/test_repository.py")
    assert hits == [], "paths on a developer's machine (put the file in the repository and point there):\n" + \
        "\n".join(hits)


def test_every_repository_path_named_in_a_tracked_file_exists() -> None:
    """A name like `studies/test_journal.py` in the README's tables is relative to tests/; placeholders
    in capitals (`studies/examples/NAME.toml`) are not names of files."""
    missing = []
    for line in git_grep("-E", "(docs|studies|trainer|objectives|search_space|benchmarks|tests)/"):
        path, number, text = line.split(":", 2)
        for name in REPO_PATH.findall(text):
            if re.search(r"/[A-Z]+\.", name) or (ROOT / name).exists() or (ROOT / "tests" / name).exists():
                continue
            missing.append(f"{path}:{number}: {name}")
    assert missing == [], "names of files that are not in the repository:\n" + "\n".join(missing)


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The patterns catch the reference that was there (so the tests above can fail)."""
    ROOT = "/" + "work/"  # spelled apart so this file does not hold the path it tests for
    assert re.search(MACHINE_PATHS, f"see {ROOT}notes/CONTRACT.md for the values")
    assert re.search(MACHINE_PATHS, f"(docs: {ROOT}notes CONTRACT, the")
    assert not re.search(MACHINE_PATHS, "root = '/usr/share/datasets/imagenet'; cache on /dev/shm")
    assert REPO_PATH.findall("see docs/CONTRACT.md and studies/records.py.") == ["docs/CONTRACT.md",
                                                                               "studies/records.py"]
