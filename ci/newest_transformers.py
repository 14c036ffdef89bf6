"""Is there a transformers release newer than the pin? The first question of .github/workflows/upgrade.yml.

    python ci/newest_transformers.py                        # PyPI's newest release against the noxfile's pin
    python ci/newest_transformers.py --release 5.25.0rc1    # a named candidate (it must be on PyPI)
    python ci/newest_transformers.py --pypi-json page.json  # offline: PyPI's JSON of transformers, saved

The pin is the noxfile's default ``HFCI_TRANSFORMERS_SPEC`` (``transformers==X``), what every
session installs. The newest release is the highest final version on PyPI that has a file not
yanked: pre-releases and dev releases are skipped unless named with ``--release``. Sets the
outputs ``pin``, ``candidate`` and ``run`` (``true`` when the candidate is newer than the pin, or
is named and differs from it), printed outside Actions, and says what it found in the job summary.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from hfci import github

PYPI_JSON = "https://pypi.org/pypi/transformers/json"
NOXFILE = Path(__file__).resolve().parents[1] / "noxfile.py"
# The noxfile's default spec: os.environ.get("HFCI_TRANSFORMERS_SPEC", "transformers==5.23.0").
_PIN = re.compile(r"""["']HFCI_TRANSFORMERS_SPEC["']\s*,\s*["']transformers==([^"']+)["']""")


class ReleaseError(Exception):
    """A pin, a payload or a named release that cannot be used."""


def pinned(noxfile_text: str) -> str:
    """The release the noxfile installs by default."""
    found = _PIN.search(noxfile_text)
    if not found:
        raise ReleaseError(
            'no pin in the noxfile: expected os.environ.get("HFCI_TRANSFORMERS_SPEC", "transformers==X")'
        )
    return found.group(1)


def releases(payload: Mapping[str, Any]) -> list[Version]:
    """Every version of PyPI's JSON that has at least one file not yanked, lowest first.

    A version whose every file is yanked was withdrawn; one without files cannot be installed.
    A version string packaging does not parse (old, non-PEP 440 uploads) is no candidate.
    """
    listed = payload.get("releases")
    if not isinstance(listed, dict):
        raise ReleaseError("not PyPI's JSON of a project: no 'releases' table")
    found = []
    for text, files in listed.items():
        try:
            version = Version(text)
        except InvalidVersion:
            continue
        if any(isinstance(f, dict) and not f.get("yanked", False) for f in files or []):
            found.append(version)
    return sorted(found)


def newest(versions: Iterable[Version]) -> Version | None:
    """The highest final release: pre-releases and dev releases are not what users upgrade to."""
    finals = [v for v in versions if not v.is_prerelease and not v.is_devrelease]
    return max(finals, default=None)


def decide(pin: str, available: Sequence[Version], named: str = "") -> tuple[str, bool, str]:
    """(candidate, run, one line for the summary) for a pin, PyPI's versions and a named release."""
    try:
        pin_version = Version(pin)
    except InvalidVersion:
        raise ReleaseError(f"the noxfile pins transformers=={pin}, not a version") from None
    if named:
        try:
            candidate = Version(named)
        except InvalidVersion:
            raise ReleaseError(f"--release {named!r}: not a version; expected one such as 5.24.0") from None
        if candidate not in available:
            latest = newest(available)
            raise ReleaseError(
                f"--release {named}: transformers {named} is not on PyPI (or every file of it is yanked); "
                f"newest release: {latest or 'none'}"
            )
        # Normalised (5.25.0-rc1 -> 5.25.0rc1): the name the matrix, its jobs and artifacts use.
        if candidate == pin_version:
            return str(candidate), False, f"transformers {candidate} is the pin: nothing to compare"
        return (
            str(candidate),
            True,
            f"transformers {candidate} (named) against the pinned {pin}: the CPU matrix runs both",
        )
    latest = newest(available)
    if latest is None:
        raise ReleaseError("PyPI lists no final release of transformers")
    if latest <= pin_version:
        return (
            str(latest),
            False,
            f"the newest transformers on PyPI is {latest}, not newer than the pin {pin}",
        )
    return str(latest), True, f"transformers {latest} is newer than the pin {pin}: the CPU matrix runs both"


def fetch(url: str = PYPI_JSON, timeout: float = 30.0) -> dict[str, Any]:
    """PyPI's JSON of a project."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", default="", help="the candidate to try (default: PyPI's newest)")
    parser.add_argument(
        "--pypi-json", type=Path, help="PyPI's JSON of transformers, saved (default: fetch it)"
    )
    parser.add_argument("--noxfile", type=Path, default=NOXFILE, help="where the pin is read")
    args = parser.parse_args(argv)
    try:
        pin = pinned(args.noxfile.read_text(encoding="utf-8"))
        payload = json.loads(args.pypi_json.read_text(encoding="utf-8")) if args.pypi_json else fetch()
        candidate, run, line = decide(pin, releases(payload), args.release.strip())
    except (ReleaseError, OSError, ValueError) as error:
        print(f"newest_transformers: error: {error}", file=sys.stderr)
        return 2
    github.set_output("pin", pin)
    github.set_output("candidate", candidate)
    github.set_output("run", "true" if run else "false")
    github.append_summary(f"### transformers upgrade\n\n{line}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
