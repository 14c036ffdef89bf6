"""Committing a refresh: the deltas folded onto the branch's newest tip, pushed, and folded again
when the branch moved meanwhile.

Each attempt fetches ``remote/branch``, checks its tip out in a temporary ``git worktree`` (the
checkout it is run from is never reset or rebased), folds the deltas onto the files there
(:mod:`hfci.refresh`), commits and pushes. A push that loses a race is not rebased as text (a
1 MB JSON file conflicts after any hand edit): the deltas are folded again onto the new tip, so
whatever landed meanwhile is kept. A push refused by branch protection stops at once; with
``--pull-request BRANCH`` the refresh goes to that branch and a pull request instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hfci import refresh
from hfci.errors import HfciError

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_PROTECTED",
    "MESSAGE",
    "CommitOptions",
    "GitError",
    "commit",
    "push_refusal",
]

MESSAGE = "Refresh performance baselines [skip ci]"
EXIT_OK = 0  # pushed, nothing to commit, or no complete delta to commit
EXIT_FAILED = 1  # gave up after the retries, or git failed (network, credentials)
EXIT_PROTECTED = 3  # the branch is protected: re-run with --pull-request

# What a server says when a push is refused by policy, not by a race: GitHub's branch protection
# (GH006) and rulesets (GH013), a token without the `workflows` permission ("refusing to allow
# ... to create or update workflow"), GitLab's protected branches. Retrying cannot help.
PROTECTED = (
    "protected branch",
    "gh006",
    "gh013",
    "refusing to allow",
    "not allowed to push",
    "changes must be made through a pull request",
)
# What git says when the branch moved after the fetch (or a lease no longer holds).
MOVED = (
    "fetch first",
    "non-fast-forward",
    "stale info",
    "failed to update ref",
    "cannot lock ref",
    "incorrect old value",
)


class GitError(HfciError):
    """A git command that failed for a reason no retry fixes; its stderr is in the message."""


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise GitError(f"git {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def push_refusal(stderr: str) -> Literal["protected", "moved", "other"]:
    """Why a push was refused: branch protection, a branch that moved, or something else."""
    text = stderr.lower()
    if any(marker in text for marker in PROTECTED):
        return "protected"
    if any(marker in text for marker in MOVED):
        return "moved"
    return "other"


@dataclass(frozen=True)
class CommitOptions:
    """Where the refresh goes and how hard to try; paths are relative to the repository's root."""

    into: Path
    durations: Path | None
    remote: str = "origin"
    branch: str = "main"
    retries: int = 5
    message: str = MESSAGE
    expect_shards: int | None = None
    require_all: bool = False
    pull_request: str | None = None
    pause: float = 2.0


def _inside(top: Path, path: Path | None) -> Path | None:
    """``path`` (relative to the working directory) as a path relative to the repository's root."""
    if path is None:
        return None
    absolute = (Path.cwd() / path).resolve()
    try:
        return absolute.relative_to(top)
    except ValueError:
        raise GitError(
            f"{path} is outside the repository {top}; --into and --durations name files in it"
        ) from None


@contextlib.contextmanager
def _worktree(top: Path, commit_id: str) -> Iterator[Path]:
    """A detached worktree of ``commit_id``, removed afterwards whatever happened."""
    parent = Path(tempfile.mkdtemp(prefix="hfci-refresh-"))
    tree = parent / "tree"
    try:
        _git(top, "worktree", "add", "--quiet", "--detach", str(tree), commit_id)
        yield tree
    finally:
        _git(top, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(parent, ignore_errors=True)
        _git(top, "worktree", "prune", check=False)


def _fetch(top: Path, remote: str, branch: str) -> str:
    _git(top, "fetch", "--quiet", "--no-tags", remote, f"refs/heads/{branch}")
    return _git(top, "rev-parse", "FETCH_HEAD").stdout.strip()


def _lease(top: Path, remote: str, branch: str) -> str:
    """The remote branch's commit now ('' if there is none), for ``--force-with-lease``."""
    listed = _git(top, "ls-remote", remote, f"refs/heads/{branch}").stdout.split()
    return listed[0] if listed else ""


def _github_repo(top: Path, remote: str) -> str | None:
    """``owner/name`` of a GitHub remote; never the URL itself, which may hold a token."""
    url = _git(top, "remote", "get-url", remote, check=False).stdout.strip()
    found = re.search(r"github\.com[:/]([^/\s]+/[^/\s]+?)(?:\.git)?/?$", url)
    return found.group(1) if found else None


def _open_pull_request(
    top: Path, options: CommitOptions, summary: Sequence[str], say: Callable[[str], None]
) -> int:
    """Open or update the pull request of ``options.pull_request`` with ``gh``, else say how."""
    head, base = options.pull_request or "", options.branch
    repo = _github_repo(top, options.remote)
    token = os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN")
    if shutil.which("gh") and token and repo:
        body = "Refreshed by `hfci baselines commit`.\n\n```\n" + "\n".join(summary) + "\n```\n"
        title = options.message.replace("[skip ci]", "").strip()
        where = ["--repo", repo]
        exists = subprocess.run(
            ["gh", "pr", "view", head, *where, "--json", "state", "--jq", ".state"],
            capture_output=True,
            text=True,
        )
        text = ["--title", title, "--body", body]
        if exists.returncode == 0 and exists.stdout.strip() == "OPEN":
            command = ["gh", "pr", "edit", head, *where, *text]
        else:
            command = ["gh", "pr", "create", *where, "--base", base, "--head", head, *text]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0:
            say(f"pull request: {done.stdout.strip() or head}")
            return EXIT_OK
        say(f"pushed {head}, but `{' '.join(command[:3])}` failed: {done.stderr.strip()}")
        return EXIT_FAILED
    where = f"https://github.com/{repo}/compare/{base}...{head}?expand=1" if repo else f"{head} into {base}"
    why = "gh is not installed" if not shutil.which("gh") else "neither GH_TOKEN nor GITHUB_TOKEN is set"
    if not repo:
        why = f"{options.remote} is not a GitHub remote"
    say(f"no pull request opened ({why}); open one from {where}")
    return EXIT_OK


def commit(
    sources: Sequence[refresh.Source],
    options: CommitOptions,
    repo: Path | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Fold ``sources`` onto ``options.remote``/``options.branch``, commit and push; an exit code.

    Bad deltas (a case claimed twice, a shard missing under ``require_all``) raise before git is
    touched. See the module's docstring for the retry; the exit codes are ``EXIT_*``.
    """
    checked = refresh.plan(sources, options.expect_shards, options.require_all)
    if checked.empty:
        say("no complete delta: nothing to commit (was the run cancelled?)")
        for name, fp in sorted(checked.fingerprints.items()):
            say(f"{name}:")
            for line in fp.problems():
                say(f"  {line}")
        return EXIT_OK
    top = Path(_git(repo or Path.cwd(), "rev-parse", "--show-toplevel").stdout.strip()).resolve()
    into = _inside(top, options.into)
    durations = _inside(top, options.durations)
    assert into is not None
    paths = [str(into)] + ([str(durations)] if durations is not None else [])
    target = options.pull_request or options.branch
    for attempt in range(1, options.retries + 1):
        tip = _fetch(top, options.remote, options.branch)
        with _worktree(top, tip) as tree:
            result = refresh.refresh(
                sources,
                tree / into,
                tree / durations if durations is not None else None,
                options.expect_shards,
                options.require_all,
            )
            refresh.write(result)
            summary = result.summary()
            _git(tree, "add", "--all", "--", *paths)
            if _git(tree, "diff", "--cached", "--quiet", check=False).returncode == 0:
                for line in summary:
                    say(line)
                say(f"no baseline changes: {options.remote}/{options.branch} already holds these figures")
                return EXIT_OK
            _git(tree, "commit", "--quiet", "-m", options.message)
            if options.pull_request:
                lease = _lease(top, options.remote, target)
                push = ["push", f"--force-with-lease=refs/heads/{target}:{lease}"]
            else:
                push = ["push"]
            pushed = _git(tree, *push, options.remote, f"HEAD:refs/heads/{target}", check=False)
            if pushed.returncode == 0:
                for line in summary:
                    say(line)
                head = _git(tree, "rev-parse", "--short", "HEAD").stdout.strip()
                say(f"pushed {head} to {options.remote}/{target} on attempt {attempt}")
                if options.pull_request:
                    return _open_pull_request(top, options, summary, say)
                return EXIT_OK
        refusal = push_refusal(pushed.stderr)
        detail = pushed.stderr.strip()
        if refusal == "protected":
            say(
                f"{options.remote}/{target} is protected: the server refused the push by policy, "
                f"and retrying cannot change that. Nothing was pushed.\n{detail}\n"
                f"Re-run with --pull-request BRANCH (e.g. --pull-request hfci/refresh-baselines) to push "
                f"the refresh to BRANCH and open a pull request into {options.branch}, or let this "
                f"job's token push to {options.branch}."
            )
            return EXIT_PROTECTED
        if refusal == "other":
            say(f"push to {options.remote}/{target} failed:\n{detail}")
            return EXIT_FAILED
        say(
            f"push rejected (attempt {attempt}/{options.retries}): {options.remote}/{target} moved; "
            "folding the deltas again onto its new tip"
        )
        time.sleep(options.pause * attempt)
    say(f"gave up after {options.retries} attempts: {options.remote}/{target} kept moving")
    return EXIT_FAILED
