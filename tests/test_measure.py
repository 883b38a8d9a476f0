"""Tests for course_helpers.measure: PeakMemory and best_of."""
from __future__ import annotations

import math

import numpy as np
import pytest

from course_helpers import measure
from course_helpers._utils import CourseInputError
from course_helpers.measure import PeakMemory, best_of


def test_peak_memory_sees_a_200mb_allocation():
    with PeakMemory() as mem:
        a = np.ones(200 * 2**20 // 8)  # 200 MB, every page touched
        a[::4096] = 2.0
        del a
    assert mem.peak_mb >= 150, mem.peak_mb
    assert mem.peak_mb < 2000, mem.peak_mb
    assert mem.base_mb > 0


def test_peak_memory_small_block_is_small():
    with PeakMemory() as mem:
        x = sum(range(1000))
    assert x == 499500
    assert 0 <= mem.peak_mb < 50, mem.peak_mb


def test_peak_memory_sampling_fallback(monkeypatch):
    """Without /proc/self/clear_refs the peak is sampled from the RSS in a thread."""
    import builtins

    real_open = builtins.open

    def no_clear_refs(path, *args, **kwargs):
        if str(path) == "/proc/self/clear_refs":
            raise OSError("not allowed")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_clear_refs)
    with PeakMemory() as mem:
        a = np.ones(200 * 2**20 // 8)
        a[::4096] = 2.0
        import time

        time.sleep(0.1)  # let the sampler see it
        del a
    assert mem._hwm is False
    assert mem.peak_mb >= 150, mem.peak_mb


def test_peak_memory_without_rss_is_nan(monkeypatch):
    monkeypatch.setattr(measure, "_rss_bytes", lambda: None)
    with PeakMemory() as mem:
        pass
    assert math.isnan(mem.peak_mb) and math.isnan(mem.base_mb)


def test_best_of_returns_the_minimum(monkeypatch):
    """Fake clock: each timed run lasts a scripted time; best_of returns the shortest."""
    durations = iter([5.0, 2.0, 3.0])
    clock = {"t": 0.0, "calls": 0}

    def fake_perf_counter():
        return clock["t"]

    def fn():
        clock["calls"] += 1
        if clock["calls"] > 1:  # the first call is the warm-up
            clock["t"] += next(durations)

    monkeypatch.setattr(measure.time, "perf_counter", fake_perf_counter)
    assert best_of(fn, repeat=3) == 2.0
    assert clock["calls"] == 4  # warm-up + 3 timed runs


def test_best_of_without_warmup(monkeypatch):
    calls = []
    ticks = iter([0.0, 1.5, 10.0, 10.5])
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(ticks))
    assert best_of(lambda: calls.append(1), repeat=2, warmup=False) == 0.5
    assert len(calls) == 2


def test_best_of_bad_input():
    with pytest.raises(CourseInputError, match="repeat must be at least 1"):
        best_of(lambda: None, repeat=0)
    with pytest.raises(CourseInputError, match="callable"):
        best_of(3)
