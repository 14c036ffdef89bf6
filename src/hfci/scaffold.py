"""``hfci init``: the starting files of a project that tests its models with hfci.

It writes the devices config the matrix plans from, a noxfile with the sessions the planned jobs
call, and a workflow that calls hfci's reusable one. It never replaces a file that exists: a
second ``hfci init`` after editing them is harmless, and says which it kept.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from hfci import __version__
from hfci.matrix import PACKAGED_CONFIG
from hfci.project import find_pyproject, folder, tool_table

__all__ = ["REUSABLE_WORKFLOW", "Scaffold", "add_command", "cmd_init", "hfci_spec", "scaffold"]

# The reusable workflow in hfci's repository; `hfci init --workflow` names another fork or pin.
REUSABLE_WORKFLOW = f"hfci/hfci/.github/workflows/reusable-models.yml@v{__version__}"

PYPROJECT_SNIPPET = """\
[tool.hfci]
# baselines = "baselines"    # folders, relative to this file
# matrices = "matrices"

[tool.hfci.select]           # the default selection; a command-line option replaces its own
tier = ["critical"]
# runner = ["mine"]

# [tool.hfci.runners]
# mine = "my_backend.hfci:run"

# [tool.hfci.models.bert]
# known_failures = [{ check = "parity", runner = "mine", raises = "NotImplementedError", reason = "my backend has no ... kernel yet" }]
"""


@dataclass(frozen=True)
class Scaffold:
    """One file ``hfci init`` writes: where, and its text."""

    path: Path
    text: str


def hfci_spec() -> str:
    """How this hfci was installed, as a pip requirement a noxfile can install again.

    A local checkout (``pip install -e /path``) is a ``file://`` URL, so a project made with a
    development hfci tests with that same hfci; otherwise the installed release.
    """
    try:
        direct = metadata.distribution("hfci").read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        direct = None
    url = json.loads(direct).get("url", "") if direct else ""
    return f"hfci @ {url}" if url.startswith("file://") else f"hfci=={__version__}"


def _template(name: str) -> str:
    return resources.files("hfci.data").joinpath("templates", name).read_text(encoding="utf-8")


def scaffold(workflow: str = REUSABLE_WORKFLOW, spec: str | None = None) -> list[Scaffold]:
    """The files of a new project, in the folders its ``[tool.hfci]`` names."""
    spec = spec or hfci_spec()
    # A file:// requirement means nothing on a GitHub runner: the workflow installs the release.
    published = spec if not spec.startswith("hfci @ file:") else f"hfci=={__version__}"
    return [
        Scaffold(folder("matrices") / "devices.toml", PACKAGED_CONFIG.read_text(encoding="utf-8")),
        Scaffold(Path("noxfile.py"), _template("noxfile.py.txt").replace("{hfci_spec}", spec)),
        Scaffold(
            Path(".github", "workflows", "hfci.yml"),
            _template("hfci.yml.txt").replace("{workflow}", workflow).replace("{hfci_spec}", published),
        ),
    ]


def _write_new(item: Scaffold) -> bool:
    """Write ``item`` unless its file exists; exclusive creation, so a race cannot overwrite."""
    item.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with item.path.open("x", encoding="utf-8") as file:
            file.write(item.text)
    except FileExistsError:
        return False
    return True


def cmd_init(args: argparse.Namespace) -> int:
    """``hfci init``: write what is missing, keep what exists, say which is which."""
    for item in scaffold(args.workflow):
        print(f"{'wrote' if _write_new(item) else 'kept (exists)'}: {item.path}")
    pyproject = find_pyproject()
    if pyproject is None or not tool_table("select", pyproject):
        where = "a pyproject.toml" if pyproject is None else str(pyproject)
        print(f"\nadd to {where}, to choose what runs (optional):\n\n{PYPROJECT_SNIPPET}")
    print("next: `hfci matrix` plans the jobs; `nox -s models -- --tier critical` runs them here")
    return 0


def add_command(sub: Any) -> None:
    """Register ``hfci init``."""
    parser = sub.add_parser(
        "init",
        help="write a starting devices config, noxfile and workflow (never overwrites a file)",
        description=cmd_init.__doc__,
    )
    parser.add_argument(
        "--workflow",
        default=REUSABLE_WORKFLOW,
        help=f"the reusable workflow the written workflow calls (default: {REUSABLE_WORKFLOW})",
    )
    parser.set_defaults(func=cmd_init)
