"""The `none` kind: a stage without attention (the plain torchvision block)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .entry import KindEntry


@dataclass(frozen=True)
class NoAttn:
    kind: ClassVar[str] = "none"

    def validate(self, where: str) -> None:
        return None

    def fits(self, where: str, channels: int, blocks: int) -> None:
        return None

    def short(self) -> str:
        return "none"

    @classmethod
    def from_short(cls, text: str) -> NoAttn | None:
        return cls() if text == "none" else None


ENTRY = KindEntry(NoAttn, in_default_space=True)
