"""The pinned golden table: parameters and FLOPs of reference specs must not drift silently."""

import json
from pathlib import Path

import pytest

from objectives import count_flops, count_params
from search_space import ArchSpec

ROWS = json.loads((Path(__file__).parent / "golden" / "reference_specs.json").read_text())


@pytest.mark.parametrize("row", ROWS, ids=[r["name"] for r in ROWS])
def test_reference_spec_matches_the_golden_table(row):
    spec = ArchSpec.from_dict(row["spec"])
    assert spec.name == row["name"]
    flops = count_flops(spec, 224)
    assert (count_params(spec), flops.fvcore, flops.complete) == (row["params"], row["fvcore"], row["complete"])
