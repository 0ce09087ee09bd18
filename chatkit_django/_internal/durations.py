"""Parsing ages such as ``90d`` or ``12h`` for the lifecycle commands."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGE = re.compile(r"^\s*(\d+)\s*([mhdw]?)\s*$")


def parse_age(value: str) -> timedelta:
    """``"30d"`` → 30 days; units m, h, d, w; a bare number is days."""
    match = _AGE.match(value)
    if not match:
        raise ValueError(
            f"{value!r} is not an age; use a number with an optional unit: 45m, 12h, 30d, 8w."
        )
    number, unit = match.groups()
    return timedelta(**{UNITS[unit or "d"]: int(number)})
