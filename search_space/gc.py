"""The `gc` kind: the Global-Context block (Cao et al. 2019) inside every residual block of the stage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar, Literal

from .checks import Fusion, check_choice, check_int, check_ratio
from .entry import KindEntry, Param

#: How GC pools the context: `att` (softmax attention over positions, the paper) or `avg` (global mean).
Pooling = Literal["att", "avg"]
_SHORT = re.compile(r"gc(?P<ratio>\d+)(?P<fusion>[as])(?P<avg>m?)")


@dataclass(frozen=True)
class GC:
    """GC with reduction `ratio`, `fusion` add (the paper's channel_add) or scale, and `pooling`."""

    ratio: int = 16
    fusion: Fusion = "add"
    pooling: Pooling = "att"
    kind: ClassVar[str] = "gc"

    def validate(self, where: str) -> None:
        check_int(f"{where}.ratio", self.ratio)
        check_choice(f"{where}.fusion", self.fusion, Fusion)
        check_choice(f"{where}.pooling", self.pooling, Pooling)

    def fits(self, where: str, channels: int, blocks: int) -> None:
        check_ratio(where, self.ratio, channels)

    def short(self) -> str:
        return f"gc{self.ratio}{self.fusion[0]}" + ("" if self.pooling == "att" else "m")

    @classmethod
    def from_short(cls, text: str) -> GC | None:
        match = _SHORT.fullmatch(text)
        if match is None:
            return None
        return cls(int(match["ratio"]), "add" if match["fusion"] == "a" else "scale",
                   "avg" if match["avg"] else "att")


ENTRY = KindEntry(
    GC,
    params=(Param("ratio", "ratios"), Param("fusion", "fusions"), Param("pooling", "poolings")),
    builder="search_space.blocks:GlobalContext",
    in_default_space=True,
)
