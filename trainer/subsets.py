"""Which images a proxy run sees: the `SubsetSpec` and the deterministic train / held-out split.

The held-out split that scores a search is carved out of `train/`, never `val/`: a search that picks
architectures by their `val/` accuracy would leave no honest number to report at the end.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from PIL import Image

#: Suffixes torchvision's ImageFolder accepts; anything else in a class folder is ignored.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
NAMED_LISTS = ("imagenet100", "imagenette", "imagewoof")


class DataError(ValueError):
    """Data that cannot be used as asked; the one-line message names the problem and the fix."""


_WRITE_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
}


def write_failure(path: str | Path, exc: OSError, setting: str) -> str:
    """One wording for every failed write in the trainer (cache, checkpoints): the path, why, and the fix.

    `setting` names what the user changes to write elsewhere, e.g. "$ATTNAS_CACHE (or cache_dir=)".
    """
    reason = _WRITE_REASONS.get(exc.errno or 0) or exc.strerror or type(exc).__name__
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "free some space" if full else "make it writable"
    return f"cannot write {path}: {reason}; {fix} or point {setting} at another folder"


def default_cache_dir() -> Path:
    """Where caches live unless told otherwise: `$ATTNAS_CACHE`, else `~/.cache/attnas`."""
    return Path(os.environ.get("ATTNAS_CACHE") or Path.home() / ".cache" / "attnas")


def named_class_list(name: str) -> tuple[str, ...]:
    """A class list shipped with attnas (package data), e.g. CMC's ImageNet-100."""
    if name not in NAMED_LISTS:
        raise DataError(f"classes: unknown named list {name!r}; use one of {', '.join(NAMED_LISTS)}")
    text = resources.files("trainer").joinpath("classlists", f"{name}.txt").read_text()
    return _parse_wnids(text)


def _parse_wnids(text: str) -> tuple[str, ...]:
    """One wnid per line; blank lines and `#` comments are allowed, extra columns are ignored."""
    lines = (line.split("#", 1)[0].split() for line in text.splitlines())
    return tuple(words[0] for words in lines if words)


@dataclass(frozen=True)
class SubsetSpec:
    """A reproducible slice of an ImageFolder tree: classes, images per class, resolution and seed.

    `classes` is 'all', a named list ('imagenet100', 'imagenette', 'imagewoof'), 'random:N' (N classes
    drawn with `seed`), 'file:PATH' (one wnid per line) or a tuple of wnids. `train_per_class=None`
    takes every image left after the held-out ones.
    """

    root: str
    classes: str | tuple[str, ...] = "all"
    train_per_class: int | None = None
    holdout_per_class: int = 50
    resolution: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", str(self.root))
        if isinstance(self.classes, (list, tuple)):
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        self.validate()

    def validate(self) -> None:
        """Refuse nonsense at construction, so a bad study file fails before any GPU time is spent."""
        if isinstance(self.classes, str):
            kind = self.classes.split(":", 1)[0]
            if self.classes != "all" and self.classes not in NAMED_LISTS and kind not in ("random", "file"):
                raise DataError(
                    f"classes: {self.classes!r} is not understood; use 'all', {', '.join(NAMED_LISTS)}, "
                    "'random:N', 'file:PATH' or a list of wnids"
                )
            if kind == "random" and not self.classes[7:].isdigit():
                raise DataError(f"classes: {self.classes!r} needs a count, e.g. 'random:100'")
        elif not self.classes:
            raise DataError("classes: the list of wnids is empty; name at least two classes")
        for name in ("holdout_per_class", "resolution", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name != "seed" else 0):
                raise DataError(f"{name}: {value!r} must be a whole number >= {1 if name != 'seed' else 0}")
        tpc = self.train_per_class
        if tpc is not None and (isinstance(tpc, bool) or not isinstance(tpc, int) or tpc < 1):
            raise DataError(f"train_per_class: {tpc!r} must be a whole number >= 1, or null for all")

    @property
    def id(self) -> str:
        """Content hash of the spec: equal specs give equal ids in any process."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if isinstance(self.classes, tuple):
            data["classes"] = list(self.classes)
        return data

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SubsetSpec:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise DataError(f"subset: unknown field(s) {sorted(unknown)}; see trainer.SubsetSpec")
        if "root" not in data:
            raise DataError("subset: 'root' is missing; set it to the folder holding train/ and val/")
        classes = data.get("classes", "all")
        return cls(**{**data, "classes": tuple(classes) if isinstance(classes, list) else classes})

    @classmethod
    def from_json(cls, text: str) -> SubsetSpec:
        return cls.from_dict(json.loads(text))


def split_dir(subset: SubsetSpec, split: str = "train") -> Path:
    """The `train/` (or `val/`) folder of the subset's tree, with a clear error when it is not there."""
    root = Path(subset.root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset path {str(root)!r} does not exist; point root at an ImageNet-style copy")
    folder = root / split
    if not folder.is_dir():
        raise DataError(f"{str(folder)!r} is missing; root must hold {split}/<class>/<image> folders")
    return folder


def resolve_classes(subset: SubsetSpec, available: list[str]) -> tuple[str, ...]:
    """The subset's class names in label order (the order given, or sorted for 'all' and 'random:N')."""
    classes = subset.classes
    if classes == "all":
        return tuple(sorted(available))
    if isinstance(classes, str) and classes.startswith("random:"):
        count = int(classes[7:])
        if count > len(available):
            raise DataError(f"classes: asked for {count} random classes but train/ has {len(available)}")
        return tuple(sorted(random.Random(subset.seed).sample(sorted(available), count)))
    if isinstance(classes, str) and classes.startswith("file:"):
        path = Path(classes[5:]).expanduser()
        if not path.is_file():
            raise DataError(f"classes: class file {str(path)!r} does not exist; give one wnid per line")
        try:
            wanted = _parse_wnids(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            raise DataError(f"classes: class file {str(path)!r} is not text (not UTF-8); give one wnid per "
                            "line") from None
    elif isinstance(classes, str):
        wanted = named_class_list(classes)
    else:
        wanted = classes
    missing = sorted(set(wanted) - set(available))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DataError(f"classes: {len(missing)} not found in train/ ({shown}); check the names or the root")
    if len(set(wanted)) != len(wanted):
        raise DataError("classes: the list names a class twice; list each wnid once")
    return tuple(wanted)


def class_files(folder: Path) -> list[str]:
    """Image file names of one class folder, sorted so the split does not depend on the file system."""
    with os.scandir(folder) as entries:
        return sorted(
            e.name
            for e in entries
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_SUFFIXES)
        )


@dataclass(frozen=True)
class Split:
    """The subset's images as paths relative to root, in label order (every class has images)."""

    classes: tuple[str, ...]
    train: tuple[tuple[str, int], ...]
    holdout: tuple[tuple[str, int], ...]


def split_subset(subset: SubsetSpec) -> Split:
    """Carve the held-out split out of train/: sort, shuffle with the subset seed, take the first ones.

    Shuffling a sorted list with a seeded RNG makes the split a pure function of (file names, seed), so
    every worker of a study holds out exactly the same images without talking to the others.

    A class folder without images is refused, not dropped: dropping it silently changed the class count (a
    99-class "imagenet100") and the labels of every class after it, and it is nearly always a half-copied
    tree (an interrupted rsync), whose other folders may be short too.
    """
    train_dir = split_dir(subset, "train")
    available = sorted(e.name for e in os.scandir(train_dir) if e.is_dir() and not e.name.startswith("."))
    wanted = resolve_classes(subset, available)
    classes, train, holdout = [], [], []
    short: dict[str, int] = {}  # classes with fewer than train_per_class images left after the held-out ones
    for wnid in wanted:
        names = class_files(train_dir / wnid)
        if not names:
            raise DataError(empty_class(train_dir, wnid, subset.classes, wanted))
        if subset.holdout_per_class >= len(names):
            raise DataError(
                f"holdout_per_class: class {wnid!r} has only {len(names)} images; "
                f"ask for fewer than {len(names)} held-out images per class"
            )
        if subset.train_per_class is not None and len(names) - subset.holdout_per_class < subset.train_per_class:
            short[wnid] = len(names) - subset.holdout_per_class
        random.Random(f"{subset.seed}:{wnid}").shuffle(names)
        label = len(classes)
        classes.append(wnid)
        cut = subset.holdout_per_class
        end = None if subset.train_per_class is None else cut + subset.train_per_class
        holdout += [(f"train/{wnid}/{n}", label) for n in names[:cut]]
        train += [(f"train/{wnid}/{n}", label) for n in names[cut:end]]
    if len(classes) < 2:
        raise DataError(
            f"classes: {len(classes)} class(es) with images under {train_dir}; accuracy over one class cannot "
            "rank architectures, so a subset needs at least 2 class folders with images"
        )
    if short:
        wnid = min(short, key=short.__getitem__)
        raise DataError(
            f"train_per_class: {subset.train_per_class} asked, but class {wnid!r} has only {short[wnid]} images "
            f"left after {subset.holdout_per_class} held out ({len(short)} class(es) short); "
            f"ask for at most {short[wnid]}, or null to train on all"
        )
    return Split(tuple(classes), tuple(train), tuple(holdout))


def empty_class(train_dir: Path, wnid: str, classes: Any, wanted: tuple[str, ...]) -> str:
    """The one line refusing a class folder that holds no images, with the fix for how classes were chosen."""
    empty = [w for w in wanted if not class_files(train_dir / w)]
    listed = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
    others = f" ({len(empty)} empty: {listed})" if len(empty) > 1 else ""
    if isinstance(classes, tuple | list) or str(classes).startswith("file:"):
        fix = "copy its images there or leave it out of `classes`"
    elif classes == "all" or str(classes).startswith("random:"):
        fix = "copy its images there or delete the empty folder"
    else:  # a named list needs every one of its classes
        fix = f"copy its images there (the list {classes!r} needs every class)"
    return f"class folder {train_dir / wnid} holds no images{others}; {fix} (images end in {', '.join(IMAGE_SUFFIXES)})"


@dataclass(frozen=True)
class SubsetCheck:
    """What `check_subset` found: the classes in label order, the split's sizes, and how many files it decoded."""

    root: str
    classes: tuple[str, ...]
    train_images: int
    holdout_images: int
    images_checked: int


def check_subset(subset: SubsetSpec) -> SubsetCheck:
    """Every check training makes, before anything is created: raise the one-line `DataError` a trial would.

    The split (root, train/, classes, 2+ classes, hold-out and train counts) is the one training uses; on
    top, the first and last file of each class (sorted) are decoded at 1/8 scale (JPEG DCT scaling), which
    catches a broken or half-copied tree in a few ms a class, in threads. The full check stays in the cache
    build, which skips and lists every unreadable file.
    """
    split = split_subset(subset)
    root = Path(subset.root).expanduser()
    by_class: dict[int, list[str]] = {}
    for path, label in split.train + split.holdout:
        by_class.setdefault(label, []).append(path)
    sample = sorted({p for paths in by_class.values() for p in (min(paths), max(paths))})
    with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL; NFS waits overlap
        problems = list(pool.map(lambda p: unreadable(root / p), sample))
    for path, problem in zip(sample, problems, strict=True):
        if problem:
            raise DataError(
                f"image {root / path} cannot be read ({problem}); replace or delete it, "
                "or re-copy the dataset if files were cut short"
            )
    return SubsetCheck(str(root), split.classes, len(split.train), len(split.holdout), len(sample))


def unreadable(path: Path) -> str | None:
    """Why `path` does not decode as an image, or None: a reduced-size decode reads every compressed byte."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (1, 1))  # JPEG: decode at 1/8 scale straight from the DCT, the cheapest full read
            im.load()
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError) for broken files
        return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    return None
