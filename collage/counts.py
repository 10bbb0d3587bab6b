"""Human sample counts: `12M`, `1.5k`, `12_000_000`, `3e6`."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .errors import UserError

_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}
_PATTERN = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]+)?(?:e[0-9]+)?)\s*([kmbg]?)\s*$", re.IGNORECASE)


def parse_count(text: str | int, what: str = "--n") -> int:
    """Parse a positive sample count; refuse anything that is not a whole positive number."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = Decimal(text)
    else:
        match = _PATTERN.match(str(text))
        if not match:
            raise UserError(f"{what} {text!r} is not a count: use a whole number such as 1000, 1.5k, 12M or 12_000_000")
        digits, suffix = match.groups()
        try:
            value = Decimal(digits.replace("_", "").replace(",", "")) * _SUFFIX[suffix.lower()]
        except InvalidOperation:
            raise UserError(f"{what} {text!r} is not a count: use a whole number such as 1000, 1.5k or 12M") from None
    if value != value.to_integral_value():
        raise UserError(f"{what} {text!r} is not a whole number of samples: use e.g. 1.5k (=1500), not 1.0005k")
    if value <= 0:
        raise UserError(f"{what} {text!r} must be at least 1")
    return int(value)
