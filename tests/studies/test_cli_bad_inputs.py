"""Bad inputs found by a hostile read (issue 17), through the real `attnas` command.

Each mistake is one `error:` line naming the option or file and the fix, a non-zero exit, and nothing written;
a read command on a journal with a torn tail reads past it and leaves the file exactly as it was. One kind of
each runs the installed console script; its variants run the script's own `studies.cli.main` in this process
(`attnas_here`, as in test_cli_errors.py), which keeps the file to seconds on a busy 2-core machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_cli_errors import RUNTIME, USAGE, one_line  # one checker of an error line for both files

from studies import storage as st

BINARY = b"\xff\xfe\x00\x01binary, not a spec" * 8


def test_pick_refuses_a_nan_budget_in_the_real_command(tmp_path: Path, attnas) -> None:
    """Checked while parsing: nothing is opened, so not even the missing storage is reported first."""
    proc = attnas("pick", "--storage", str(tmp_path / "s.db"), "--study", "s", "--max-gflops", "nan", cwd=tmp_path)
    one_line(proc, USAGE, ["--max-gflops", "nan is not a budget", "positive number of GFLOPs"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("flags", "needles"), [
    (["--max-gflops", "-5"], ["--max-gflops", "-5.0 is not a budget"]),
    (["--max-gflops", "0"], ["--max-gflops", "0.0 is not a budget"]),
    (["--max-gflops", "inf"], ["--max-gflops", "inf is not a budget"]),
    (["--max-gflops", "1", "--min-top1", "80"], ["--min-top1", "between 0 and 1", "for 80 % give 0.8"]),
    (["--max-gflops", "1", "--min-top1", "nan"], ["--min-top1", "between 0 and 1"]),
])
def test_pick_refuses_a_budget_or_top1_that_is_not_one(flags: list[str], needles: list[str], tmp_path: Path,
                                                       attnas_here, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    one_line(attnas_here("pick", "--storage", str(tmp_path / "s.db"), "--study", "s", *flags), USAGE, needles)
    assert list(tmp_path.iterdir()) == []


def test_a_binary_spec_or_study_file_is_named(tmp_path: Path, attnas, attnas_here,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec, study = tmp_path / "spec.json", tmp_path / "study.toml"
    spec.write_bytes(BINARY)
    study.write_bytes(BINARY)
    (tmp_path / "data").mkdir()
    needles = [f"spec file {spec}", "not a spec JSON", "not UTF-8", "0xff", "`attnas pick` writes"]
    one_line(attnas("flops", str(spec), cwd=tmp_path), RUNTIME, needles)
    monkeypatch.chdir(tmp_path)
    one_line(attnas_here("train", str(spec), "--data", str(tmp_path / "data")), RUNTIME, needles)
    one_line(attnas_here("create", str(study)), RUNTIME, [f"study file {study}", "not UTF-8"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "spec.json", "study.toml"]  # no runs/, no .attnas


def test_a_spec_file_that_is_not_a_spec_is_named(tmp_path: Path, attnas_here) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text('{"backbone": "resnet18", "stages": {"c4": {"kind": "xx"}}}')
    one_line(attnas_here("flops", str(spec)), RUNTIME, [f"spec file {spec}", "stages.c4.kind", "'xx'"])
    spec.write_text('{"backbone": ')
    one_line(attnas_here("flops", str(spec)), RUNTIME, [f"spec file {spec}", "not valid JSON"])


STUDY = """
name = "empty-class"
storage = "sqlite:///{folder}/s.db"
trials = 2
device = "cpu"
[data]
root = "{root}"
holdout_per_class = 1
resolution = 16
[schedule]
epochs = 1
width_mult = 0.125
"""


def test_an_empty_class_folder_is_refused_before_anything_is_made(tmp_path: Path, attnas) -> None:
    """An empty class folder would have been dropped, shifting the class count and every later class's label."""
    root = tmp_path / "tree"
    rng = np.random.default_rng(0)
    for wnid, count in (("a", 3), ("b", 0), ("c", 3)):
        (root / "train" / wnid).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / "train" / wnid / f"{i}.png")
    study = tmp_path / "study.toml"
    study.write_text(STUDY.format(folder=tmp_path, root=root))
    before = sorted(tmp_path.rglob("*"))
    one_line(attnas("create", str(study), cwd=tmp_path), RUNTIME,
             [f"class folder {root / 'train' / 'b'} holds no images", "delete the empty folder"])
    assert sorted(tmp_path.rglob("*")) == before  # no storage, no .attnas folder, no cache entry here


def test_read_commands_read_past_a_torn_journal_tail_and_write_nothing(tmp_path: Path, synthetic, attnas,
                                                                        attnas_here) -> None:
    """status, front, pick, report leave a torn journal exactly as it is (no .bak, no .rejected) and still
    show every trial; the one note on stderr says who heals it. The next writer does, as before."""
    path = tmp_path / "journal" / "study.log"
    path.parent.mkdir()
    synthetic.make_study(synthetic.mixed(), storage=st.open_storage(st.parse(str(path))), name="s")
    torn = b'{"op_code":8,"worker_id":"dead","trial_id":2,"use'  # a writer killed mid-line
    with open(path, "ab") as f:
        f.write(torn)
    before = path.read_bytes()
    where = ["--storage", str(path), "--study", "s"]
    status = attnas("status", *where, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "trained" in status.stdout and "over budget" in status.stdout and "trial 6 failed" in status.stdout
    notes = status.stderr.strip().splitlines()
    assert len(notes) == 1 and "read past them and left the file as it is" in notes[0], notes
    assert f"attnas repair {path}" in notes[0]
    for command in (["front", "--json"], ["pick", "--max-gflops", "5", "--out", str(tmp_path / "pick.json")],
                    ["report", "--json"], ["report", "--out", str(tmp_path / "r.html")]):
        proc = attnas_here(*command, *where)
        assert proc.returncode == 0, proc.stderr
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["study.log"]  # no .bak-*, no .rejected, no .lock
    st.open_storage(st.parse(str(path)))  # a writer's open heals it, as before
    assert path.with_name("study.log.rejected").read_bytes() == torn + b"\n"


def test_binary_class_and_space_files_are_named(tmp_path: Path) -> None:
    """The other text files attnas reads: a class list (`classes = "file:..."`) and a space file."""
    from search_space import SearchSpace, SpecError
    from trainer import DataError, SubsetSpec, split_subset

    root = tmp_path / "tree"
    for wnid in ("a", "b"):
        (root / "train" / wnid).mkdir(parents=True)
    wnids, space = tmp_path / "wnids.txt", tmp_path / "space.toml"
    wnids.write_bytes(BINARY)
    space.write_bytes(BINARY)
    with pytest.raises(DataError, match=rf"class file '{wnids}' is not text \(not UTF-8\); give one wnid per line"):
        split_subset(SubsetSpec(root=str(root), classes=f"file:{wnids}"))
    with pytest.raises(SpecError, match=rf"space file {space} is not text \(not UTF-8\)"):
        SearchSpace.from_file(space)
