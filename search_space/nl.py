"""The `nl` kind: non-local blocks (Wang et al. 2018, embedded Gaussian) after residual blocks of the stage."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from .checks import Fusion, SpecError, check_bool, check_choice, check_fraction, check_int
from .entry import KindEntry, Param

_SHORT = re.compile(r"nl(?:(?P<den>\d+)|w(?P<width>[\d.]+))(?P<fusion>[as])(?P<count>\d+)(?P<sub>p?)")


@dataclass(frozen=True)
class NL:
    """Non-local block settings.

    `width` is the inter-channel fraction (the paper's 1/2); `count` blocks are placed after every other
    residual block counting back from the last one, so count=1 is "after the last block" and
    count=ceil(n/2) is the paper's every-other-block setting.
    """

    width: float = 0.5
    count: int = 1
    fusion: Fusion = "add"
    subsample: bool = False
    kind: ClassVar[str] = "nl"

    def validate(self, where: str) -> None:
        check_fraction(f"{where}.width", self.width)
        check_int(f"{where}.count", self.count)
        check_choice(f"{where}.fusion", self.fusion, Fusion)
        check_bool(f"{where}.subsample", self.subsample)

    def fits(self, where: str, channels: int, blocks: int) -> None:
        if int(channels * self.width) < 1:
            raise SpecError(f"{where}.width: {self.width} of {channels} channels rounds to zero; use a larger width")
        most = (blocks + 1) // 2
        if self.count > most:
            raise SpecError(f"{where}.count: {self.count} NL blocks do not fit every other one of the stage's "
                            f"{blocks} residual blocks; use at most {most}")

    def short(self) -> str:
        denominator = 1 / self.width
        width = f"{round(denominator)}" if abs(denominator - round(denominator)) < 1e-9 else f"w{self.width:g}"
        return f"nl{width}{self.fusion[0]}{self.count}" + ("p" if self.subsample else "")

    @classmethod
    def from_short(cls, text: str) -> NL | None:
        match = _SHORT.fullmatch(text)
        if match is None:
            return None
        den = int(match["den"] or 0)  # "nl0a1" reads as width 0, which validation then refuses by name
        width = float(match["width"]) if match["width"] else (1 / den if den else 0.0)
        return cls(width, int(match["count"]), "add" if match["fusion"] == "a" else "scale", bool(match["sub"]))


def nl_positions(setting: NL, blocks: int) -> set[int]:
    """Indices of the residual blocks followed by an NL block: every other one, counting back from the last.

    count=1 is "after the last block"; count=ceil(n/2) is the NL paper's every-other-block setting
    (e.g. 3 in ResNet-50's res4 and 2 in res3 for its 5-block model).
    """
    return {blocks - 1 - 2 * i for i in range(setting.count)}


ENTRY = KindEntry(
    NL,
    # Fusion is asked first, as before the registry: the order is part of every seeded study's sequence.
    params=(Param("fusion", "fusions"), Param("width", "nl_widths"), Param("count", "nl_counts"),
            Param("subsample", "nl_subsample")),
    placement="after",
    builder="search_space.blocks:NonLocal",
    positions=nl_positions,
    in_default_space=True,
)
