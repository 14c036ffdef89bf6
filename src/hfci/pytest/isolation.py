"""Crash isolation: a case that kills its worker costs that case, never the run.

hfci runs cases in pytest-xdist workers (``hfci run --workers 0`` still uses one), because only a
process boundary survives a segfault, an abort, ``os._exit`` or the kernel's OOM killer. xdist
already replaces a dead worker; what this module adds:

- :class:`CaseScheduling`, xdist's ``loadgroup`` scheduling made to survive a worker's death: the
  check that crashed is not run again, nor the rest of its case (it would crash again), every
  other case is rescheduled, and a replacement worker is given work only once it has collected
  (xdist 3.8 hands it work before and fails with ``KeyError: <WorkerController gw3>``).
- the reason a worker died: the signal or exit code of its process, or the memory ceiling's note.
- :class:`MemoryCeiling`, a watchdog in each worker that stops the case whose process grows past
  ``--max-memory``, before it swaps the machine or the OOM killer picks a neighbour.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from xdist.scheduler.loadgroup import LoadGroupScheduling

from hfci.errors import HfciError

__all__ = [
    "CaseScheduling",
    "MemoryCeiling",
    "crash_reason",
    "default_max_memory",
    "note_path",
    "parse_memory",
    "release_memory",
    "rss_bytes",
]

_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20}
_UNITS |= {"g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}
_STATM = "/proc/self/statm"


class CaseScheduling(LoadGroupScheduling):
    """``--dist loadgroup`` that keeps a case on one worker and drops it when it crashes.

    ``scope_of`` names each test's case. xdist groups by an ``@group`` suffix its workers add to
    the node ids, which pytest 9 no longer lets them change (``item._nodeid`` is gone), so without
    it every check became a unit of its own and each worker built the same model again.
    """

    def __init__(
        self, config: Any, log: Any = None, scope_of: Callable[[str], str | None] | None = None
    ) -> None:
        super().__init__(config, log)
        self.scope_of = scope_of or (lambda node_id: None)
        # crashed node id -> the node ids of its case that were still to run, and are not run.
        self.dropped: dict[str, list[str]] = {}

    def _split_scope(self, nodeid: str) -> str:
        return self.scope_of(nodeid) or super()._split_scope(nodeid)

    def remove_node(self, node: Any) -> str | None:
        workload = self.assigned_work.pop(node)
        pending = [
            (scope, nodeid) for scope, unit in workload.items() for nodeid, done in unit.items() if not done
        ]
        if not pending:
            return None
        crashed_scope, crashitem = pending[0]
        self.dropped[crashitem] = [nodeid for scope, nodeid in pending[1:] if scope == crashed_scope]
        for scope, unit in workload.items():
            if scope != crashed_scope and not all(unit.values()):
                self.workqueue[scope] = unit
        for other in self.assigned_work:
            self._reschedule(other)
        return crashitem

    def _reschedule(self, node: Any) -> None:
        # A replacement worker is in assigned_work before it has collected; it is scheduled once
        # its collection arrives (xdist calls schedule() then).
        if node in self.registered_collections:
            super()._reschedule(node)


def note_path(testrunuid: str, worker: str) -> str:
    """Where a worker leaves the reason it is about to die (the memory ceiling's note)."""
    return os.path.join(tempfile.gettempdir(), f"hfci-note-{testrunuid}-{worker}.txt")


def _exit_status(node: Any) -> int | None:
    """The worker process's exit status (negative: the signal), where execnet exposes it."""
    popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)
    if popen is None:
        return None
    try:
        return popen.wait(timeout=5)
    except Exception:
        return None


def crash_reason(node: Any, testrunuid: str) -> str:
    """Why a worker died: the memory ceiling's note, else its signal or exit code."""
    worker = getattr(getattr(node, "gateway", None), "id", "?")
    path = note_path(testrunuid, worker)
    note = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            note = handle.read().strip()
        os.unlink(path)
    status = _exit_status(node)
    if status is None:
        how = "its worker died"
    elif status < 0:
        how = f"killed by signal {-status} ({signal.Signals(-status).name})"
    else:
        how = f"its process exited with code {status}"
    return f"{note}; {how}" if note else how


def parse_memory(text: str) -> int:
    """``"8GiB"``, ``"512M"``, ``"0"`` -> bytes; anything else is one clear error."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise HfciError(f"bad --max-memory {text!r}; expected a size such as 8GiB, 512MiB or 0 (no ceiling)")
    return int(float(match.group(1)) * _UNITS[unit])


def _total_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def default_max_memory(workers: int) -> int:
    """Four fifths of the machine's memory, shared by the workers (0: no ceiling known)."""
    total = _total_memory()
    return int(total * 0.8 / max(workers, 1)) if total else 0


def rss_bytes() -> int | None:
    """This process's resident memory, or None where /proc does not say (no ceiling there)."""
    try:
        with open(_STATM, encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


# Growth of resident memory after which the next change of case runs a full gc.collect (about a
# second once every modeling module is imported, so not after every case). The benchmark's
# memory profile leaves cyclic garbage only the collector frees: 1.6 GiB after one of slanet's.
RELEASE_AFTER = 256 * 2**20


def release_memory(mark: int | None) -> int | None:
    """Give the heap freed by the last case back to the system; returns the new resident mark.

    Cycles are collected only after real growth since ``mark``; ``malloc_trim`` (under a
    millisecond) always runs, as glibc otherwise keeps freed chunks resident for the next case.
    """
    rss = rss_bytes()
    if rss is not None and mark is not None and rss - mark > RELEASE_AFTER:
        gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_bytes()


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


class MemoryCeiling:
    """A daemon thread that kills its own worker when its resident memory passes ``limit``.

    A thread cannot interrupt a kernel that is allocating, so the worker is killed (SIGKILL, as
    the OOM killer would) after leaving a note; the controller records the case as crashed with
    that note, and a replacement worker takes the other cases.
    """

    def __init__(self, limit: int, note: str, interval: float = 0.05) -> None:
        self.limit, self.note, self.interval = limit, note, interval
        self.running = "?"
        self._thread = threading.Thread(target=self._watch, name="hfci-memory-ceiling", daemon=True)

    def start(self) -> None:
        """Start watching (only where /proc gives the resident size)."""
        if self.limit > 0 and rss_bytes() is not None:
            self._thread.start()

    def _watch(self) -> None:
        while True:
            rss = rss_bytes() or 0
            if rss > self.limit:
                with open(self.note, "w", encoding="utf-8") as handle:
                    handle.write(
                        f"exceeded the memory ceiling: {_mib(rss)} resident > --max-memory {_mib(self.limit)}"
                    )
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(self.interval)
