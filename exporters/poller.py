"""MegEngine's event poller: a thread that spins from the first eager tensor until exit.

MegEngine 1.13's imperative runtime starts one thread named ``CompNodeSync`` the first time an
eager tensor is used (``imperative/src/impl/physical_tensor.cpp``, ``monitor_events``): it polls
the compute nodes' events in rounds 10 microseconds apart, for the life of the process, with no
option or environment variable to stop it. Measured on the 2-core machine: 0.22 of a core while
the process sleeps (0.9 CPU-seconds in 4 idle seconds). Lite alone does not start it.

Two consequences, both handled here:

* It competes with real work. Every harness process makes an eager tensor at start-up
  (``exporters.quiet.probe_cuda_quietly``), so a pytest worker waiting for a gate subprocess
  still burns a fifth of a core, and two xdist workers took a third more CPU time than the same
  tests run one after another. ``idle_megengine_poller()`` moves the thread to Linux's
  ``SCHED_IDLE`` class: it runs on a core nobody else wants and yields at once otherwise.
* It inflates process CPU time: of the 1.2-1.6 CPU-seconds per wall second a "1 thread" Lite
  config showed under ``time.process_time()``, up to 0.22 was the poller's (the rest is Lite's
  waiting spin, README "Notes on MegEngine", CPU a deployment really pays).
  ``work_cpu_time()`` is the process CPU time minus the poller's, what the benchmarks record.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

#: The thread name MegEngine gives its event poller.
POLLER_NAME = "CompNodeSync"

_TASKS = Path("/proc/self/task")
#: Process id -> poller thread ids once found (the thread is created once per process).
_FOUND: dict[int, tuple[int, ...]] = {}
#: Poller thread id -> the open file descriptor of its ``schedstat``.
_SCHEDSTAT: dict[int, int] = {}


def poller_threads() -> tuple[int, ...]:
    """Thread ids of this process's MegEngine poller (empty before the first eager tensor, or
    where ``/proc`` is absent)."""
    pid = os.getpid()
    if pid in _FOUND:
        return _FOUND[pid]
    found = []
    try:
        tasks = list(_TASKS.iterdir())
    except OSError:
        return ()
    for task in tasks:
        try:
            if (task / "comm").read_text().strip() == POLLER_NAME:
                found.append(int(task.name))
        except (OSError, ValueError):
            continue  # the thread ended while we looked
    if found:
        _FOUND[pid] = tuple(found)
    return tuple(found)


def idle_megengine_poller(wait: float = 0.0) -> int:
    """Puts the poller thread(s) in ``SCHED_IDLE`` (else at nice 19); returns how many were
    found. The thread names itself once it runs, which on a busy machine can be after the
    first eager tensor returned: ``wait`` seconds at most are spent looking for it. Lowering
    one's own threads needs no privilege; a failure leaves them as they were."""
    deadline = time.monotonic() + wait
    threads = poller_threads()
    while not threads and time.monotonic() < deadline:
        time.sleep(0.002)
        threads = poller_threads()
    for tid in threads:
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, 19)
    return len(threads)


def _thread_cpu_seconds(tid: int) -> float:
    """The thread's CPU time from ``/proc/self/task/TID/schedstat`` (nanoseconds on CPU), read
    with ``pread`` on a file kept open: 0.75 us a read against 16 us opening it each time, so
    the benchmarks' clock reads stay small beside a sub-millisecond forward."""
    try:
        fd = _SCHEDSTAT.get(tid)
        if fd is None:
            fd = _SCHEDSTAT[tid] = os.open(_TASKS / str(tid) / "schedstat", os.O_RDONLY)
        return int(os.pread(fd, 64, 0).split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def work_cpu_time() -> float:
    """``time.process_time()`` less the MegEngine poller's CPU time: the CPU seconds the
    process's own work took (its Lite threads included)."""
    return time.process_time() - sum(_thread_cpu_seconds(tid) for tid in poller_threads())
