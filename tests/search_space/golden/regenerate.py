"""Rewrite tests/search_space/golden/reference_specs.json from the current code (only after a deliberate change).

Run: `.venv/bin/python tests/search_space/golden/regenerate.py`, then review the diff: every changed number must be
explained in the commit message (as torchvision and pycls do for their pinned tables).
"""

import json
from pathlib import Path

from objectives import count_flops, count_params
from search_space import GC, NL, SE, ArchSpec, NoAttn

REFERENCE = [
    ArchSpec("resnet18"),
    ArchSpec("resnet50"),
    ArchSpec("resnet50", stages=(SE(16),) * 4),
    ArchSpec("resnet50", stages=(NoAttn(), GC(16), GC(16), GC(16))),
    ArchSpec("resnet50", stages=(NoAttn(), NoAttn(), NL(0.5, 1), NoAttn())),
    ArchSpec("resnet50", stages=(NoAttn(), NL(0.5, 2), NL(0.5, 3), NoAttn())),
    ArchSpec("resnet50", stages=(SE(8, "add"), GC(4, "scale", "avg"), NL(0.25, 1, "scale", True), SE(32))),
    ArchSpec("resnet101", 0.5, (GC(16), SE(16), NL(0.125, 2), GC(16, "add", "avg"))),
]


def rows() -> list[dict]:
    out = []
    for spec in REFERENCE:
        flops = count_flops(spec, 224)
        out.append({"spec": spec.to_dict(), "name": spec.name, "params": count_params(spec),
                    "fvcore": flops.fvcore, "complete": flops.complete})
    return out


if __name__ == "__main__":
    path = Path(__file__).with_name("reference_specs.json")
    path.write_text(json.dumps(rows(), indent=1) + "\n")
    print(f"wrote {path}")
