"""The two colours a stateless service alternates between."""

from __future__ import annotations

from enum import StrEnum


class Color(StrEnum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Color:
        return Color.GREEN if self is Color.BLUE else Color.BLUE

    @classmethod
    def parse(cls, value: str | None) -> Color | None:
        """A colour from text (a state or route file); None for anything else."""
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            return None
