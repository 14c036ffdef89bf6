"""Commit refreshed baselines and push them, rebasing onto a moving branch a bounded number of times.

Run by the commit job of .github/workflows/baselines.yml after it has merged every device's
baseline files. Exit codes: 0 pushed (or nothing to commit), 1 gave up after the retries.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

MESSAGE = "Refresh performance baselines [skip ci]"


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=check)


def commit(paths: list[str], message: str) -> bool:
    """Stage and commit ``paths``; False when they hold no change."""
    git("add", "--all", "--", *paths)
    if git("diff", "--cached", "--quiet", check=False).returncode == 0:
        return False
    git("commit", "--quiet", "-m", message)
    return True


def push_with_rebase(remote: str, branch: str, retries: int, pause: float) -> bool:
    """Push; when the branch moved meanwhile, ``pull --rebase`` and try again, ``retries`` times."""
    for attempt in range(1, retries + 1):
        pushed = git("push", remote, f"HEAD:{branch}", check=False)
        if pushed.returncode == 0:
            print(f"pushed on attempt {attempt}")
            return True
        print(f"push rejected (attempt {attempt}/{retries}): {pushed.stderr.strip().splitlines()[-1:]}")
        rebased = git("pull", "--rebase", remote, branch, check=False)
        if rebased.returncode != 0:
            git("rebase", "--abort", check=False)
            print(f"rebase onto {remote}/{branch} failed: {rebased.stderr.strip()}", file=sys.stderr)
            return False
        time.sleep(pause * attempt)
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", nargs="*", default=["baselines", "matrices/durations.json"])
    parser.add_argument("--message", default=MESSAGE)
    parser.add_argument("--remote", default="origin")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds, times the attempt number")
    args = parser.parse_args(argv)
    # A path may be gone (its files deleted) yet tracked; git add --all records that too.
    paths = [p for p in args.paths if Path(p).exists() or git("ls-files", p).stdout.strip()]
    if not paths or not commit(paths, args.message):
        print("no baseline changes to commit")
        return 0
    if push_with_rebase(args.remote, args.branch, args.retries, args.pause):
        return 0
    print(f"gave up after {args.retries} attempts", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
