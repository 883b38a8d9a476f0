"""Measuring cost: peak memory of a block and wall time of a call.

The one place the course measures what a computation costs; ``baselines.run_all_baselines``,
the scripts in ``benchmarks/`` and the chapters use it.

=============  ====================================================================================
Name           What it does
=============  ====================================================================================
PeakMemory     context manager: peak resident-memory increase over a block, in MB (``.peak_mb``)
best_of        wall-clock seconds of ``fn()``: the best of ``repeat`` runs, after one warm-up call
=============  ====================================================================================

Layer 0 (like ``_utils``): imports nothing from ``course_helpers`` but ``_utils``.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from ._utils import CourseInputError

__all__ = ["PeakMemory", "best_of"]


def _rss_bytes() -> int | None:
    """Current resident set size of this process in bytes (``None`` if it cannot be read)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except (ImportError, OSError, AttributeError):  # pragma: no cover - no way to measure
            return None


class PeakMemory:
    """Peak resident-memory increase over a block, in MB.

    Linux: resets the kernel's high-water mark (``/proc/self/clear_refs``) on entry and reads
    ``VmHWM`` on exit (exact, includes memory that Rust, numba or BLAS allocate). Elsewhere:
    samples the resident set size every 10 ms in a background thread.

    Attributes
    ----------
    peak_mb
        Peak increase over the resident memory at entry, in MB (``nan`` if memory cannot be
        read on this system, or before the block has ended).
    base_mb
        Resident memory at entry, in MB (``nan`` if it cannot be read).

    Notes
    -----
    On Linux, resetting the high-water mark also lowers the process's ``ru_maxrss`` from then on;
    read ``resource.getrusage`` *before* the block if you need the whole-process peak.

    Examples
    --------
    >>> import numpy as np
    >>> with PeakMemory() as mem:
    ...     a = np.ones(50 * 2**20 // 8)  # 50 MB, touched
    ...     del a
    >>> mem.peak_mb >= 0   # about 50 in a fresh process; less where freed memory is reused
    True
    """

    def __init__(self):
        self.peak_mb = float("nan")
        self.base_mb = float("nan")

    def __enter__(self):
        self.base = _rss_bytes()
        self.peak_mb = float("nan")
        self.base_mb = float("nan") if self.base is None else self.base / 2**20
        self._hwm = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self._hwm = True
        except OSError:
            self._samples = [self.base or 0]
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            if self.base is not None:
                self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self._samples.append(_rss_bytes() or 0)

    def __exit__(self, *exc):
        if self.base is None:
            return False
        if self._hwm:
            try:
                with open("/proc/self/status") as fh:
                    hwm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM"))
                self.peak_mb = max(hwm - self.base, 0) / 2**20
            except (OSError, StopIteration, ValueError):  # pragma: no cover
                pass
        else:
            self._stop.set()
            self._thread.join()
            self._samples.append(_rss_bytes() or 0)
            self.peak_mb = max(max(self._samples) - self.base, 0) / 2**20
        return False

    def __repr__(self) -> str:
        return f"PeakMemory(peak_mb={self.peak_mb:.1f})"


def best_of(fn: Callable[[], object], *, repeat: int = 2, warmup: bool = True) -> float:
    """Wall-clock seconds of ``fn()``: the best of ``repeat`` runs.

    The minimum is the run least disturbed by other programs on the machine; the first call
    (``warmup=True``, not timed) pays one-off costs such as imports, caches and allocator growth.

    Parameters
    ----------
    fn
        A callable without arguments, e.g. ``lambda: model(ids)``.
    repeat
        How many timed runs (at least 1).
    warmup
        Call ``fn()`` once, untimed, first.

    Returns
    -------
    float
        The shortest of the ``repeat`` wall-clock times, in seconds.

    Examples
    --------
    >>> t = best_of(lambda: sum(range(1000)), repeat=3)
    >>> 0 <= t < 1
    True
    >>> best_of(print, repeat=0)
    Traceback (most recent call last):
    ...
    course_helpers._utils.CourseInputError: best_of(repeat=0): repeat must be at least 1 ...
    """
    if not callable(fn):
        raise CourseInputError(
            f"best_of() needs a callable without arguments, got {type(fn).__name__}. "
            "Fix: wrap the call in a lambda, e.g. best_of(lambda: f(x))."
        )
    if int(repeat) < 1:
        raise CourseInputError(
            f"best_of(repeat={repeat}): repeat must be at least 1 (the number of timed runs)."
        )
    if warmup:
        fn()
    best = float("inf")
    for _ in range(int(repeat)):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
