"""Write the known-answer task on a wider grid: three Fashion-MNIST photos in 3 of GRID x GRID cells.

Usage: .venv/bin/python benchmarks/odd_grid.py OUT [--grid 3] [--idx /dir/of/idx/files]

Why. On the shipped 2x2 task (trainer/oddone.py) the blocks' gain is learning speed: with 950 training images
per class the plain ResNet catches up (benchmarks/RESULTS.md, "More images"). A convolution compares two cells
through weights learned for each offset between them, and a 2x2 grid holds 12 layouts; NL compares positions
by content wherever they are. On a 3x3 grid the layouts are 252, so a gain that comes from that difference
should need far more images to fade. This writes such a tree (the same photos, seed and counts as the shipped
task, train/ from the official train split, val/ from the test split) for a study file's `data.root`;
RESULTS.md, "A wider grid", says what it measured.
"""

from __future__ import annotations

import argparse

from trainer.fashion import find_source
from trainer.oddone import write_odd_tree


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write (train/ and val/ ImageFolder splits); reused once written")
    parser.add_argument("--grid", type=int, default=3, help="cells per side (2: the shipped task)")
    parser.add_argument("--idx", default=None, help="folder of Fashion-MNIST's four IDX files (default: found)")
    args = parser.parse_args(argv)
    print(write_odd_tree(args.out, find_source(args.idx), grid=args.grid))


if __name__ == "__main__":
    main()
