"""The one error base: every mistake hfci reports to a person derives from ``HfciError``.

The command line prints such an error as one line and exits 2; the pytest plugin turns it into a
usage error. Each stage names its own subclass (``CatalogError``, ``BaselineError``, ...), so a
caller can tell a bad selection from a corrupt file without parsing messages.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["HfciError", "validate_choices"]


class HfciError(ValueError):
    """Bad input, named with the valid choices where there are any."""


def validate_choices(
    what: str, given: Iterable[str], valid: Iterable[str], error: type[HfciError] = HfciError
) -> None:
    """Raise one clear ``error`` naming the first bad value and every valid one."""
    valid = list(valid)
    for value in given:
        if value not in valid:
            raise error(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
