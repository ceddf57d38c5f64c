"""The `se` kind: Squeeze-Excitation (Hu et al. 2018) inside every residual block of the stage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from .checks import Fusion, check_choice, check_int, check_ratio
from .entry import KindEntry, Param

_SHORT = re.compile(r"se(?P<ratio>\d+)(?P<fusion>[as])")


@dataclass(frozen=True)
class SE:
    """SE with reduction `ratio` (hidden = C // ratio), fused by `scale` (the paper) or `add`."""

    ratio: int = 16
    fusion: Fusion = "scale"
    kind: ClassVar[str] = "se"

    def validate(self, where: str) -> None:
        check_int(f"{where}.ratio", self.ratio)
        check_choice(f"{where}.fusion", self.fusion, Fusion)

    def fits(self, where: str, channels: int, blocks: int) -> None:
        check_ratio(where, self.ratio, channels)

    def short(self) -> str:
        return f"se{self.ratio}{self.fusion[0]}"

    @classmethod
    def from_short(cls, text: str) -> SE | None:
        match = _SHORT.fullmatch(text)
        if match is None:
            return None
        return cls(int(match["ratio"]), "add" if match["fusion"] == "a" else "scale")


ENTRY = KindEntry(
    SE,
    params=(Param("ratio", "ratios"), Param("fusion", "fusions")),
    builder="search_space.blocks:SqueezeExcite",
    in_default_space=True,
)
