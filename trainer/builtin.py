"""One resolver for a study's `data.root`: the built-in dataset names, or a path to an ImageFolder tree.

Built-in trees are written into the cache directory on first use (locked and atomic, so many workers
starting together write them once) and their path is returned; every caller (studies, benchmarks, the CLI)
goes through `dataset_root` so the names mean the same thing everywhere.
"""

from __future__ import annotations

from pathlib import Path

from trainer.digits import write_digits_tree
from trainer.fashion import FASHION, find_source, write_fashion_tree
from trainer.oddone import ODD, write_odd_tree
from trainer.subsets import DataError, default_cache_dir

DIGITS = "digits"
BUILTIN = (DIGITS, FASHION, ODD)


def dataset_root(root: str, cache_dir: str | Path | None = None) -> str:
    """The tree a study reads: "digits", "fashion-mnist" or "fashion-mnist:/dir/of/idx/files" (and the known-answer
    task "fashion-odd", from the same files) are written to
    the cache (`cache_dir`, else `default_cache_dir()`); any other existing path is returned unchanged.

    Fashion-MNIST's tree is named by a digest of its IDX files, so a different copy never reuses a tree
    written from another.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if root == DIGITS:
        return str(write_digits_tree(cache / DIGITS))
    name, _, source = root.partition(":")
    if name in (FASHION, ODD):  # both are written from the same four IDX files
        found = find_source(source or None)
        if name == ODD:
            return str(write_odd_tree(cache / f"{ODD}-{found.digest}", found))
        return str(write_fashion_tree(cache / f"{FASHION}-{found.digest}", found.directory))
    if not Path(root).expanduser().is_dir():
        raise DataError(f"data root {root!r} does not exist; point it at an ImageFolder tree with train/ and val/, "
                        f"or use a built-in dataset: {', '.join(repr(n) for n in BUILTIN)} "
                        "(or 'fashion-mnist:/dir' / 'fashion-odd:/dir' for your own copy of its four IDX files)")
    return root
