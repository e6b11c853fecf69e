"""Kernel-vs-reference speed ratios, measured in the same run and printed as one table.

A ratio of two timings taken seconds apart on the same machine holds on a noisy CI box where
absolute times do not. Benchmarks call `record_ratio` after timing both sides; the session
finish prints the table (wire-up in benchmarks/conftest.py:
`from ratios import pytest_terminal_summary  # noqa: F401`).

    from ratios import record_ratio
    record_ratio("jaro-winkler 58k x 50 (native vs rapidfuzz)", ours_s, reference_s)
"""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Ratio:
    name: str
    ours_s: float
    reference_s: float

    @property
    def speedup(self) -> float:
        """How many times faster ours is than the reference (> 1: ours is faster)."""
        return self.reference_s / self.ours_s


_RATIOS: list[Ratio] = []


def best_of(n: int, fn, *args, **kwargs) -> float:
    """The shortest of n timed calls fn(*args, **kwargs), in seconds, with the cyclic garbage
    collector off as `tagfold pipeline` runs (a collection pass would land on whichever side
    happened to allocate past the threshold)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            fn(*args, **kwargs)
            times.append(time.perf_counter() - start)
        return min(times)
    finally:
        if enabled:
            gc.enable()


def record_ratio(name: str, ours_s: float, reference_s: float) -> Ratio:
    """Record one comparison; both times in seconds for the same work, measured in this run."""
    for label, value in (("ours_s", ours_s), ("reference_s", reference_s)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"record_ratio({name!r}): {label} must be a positive finite time in seconds, got {value!r}")
    ratio = Ratio(name, float(ours_s), float(reference_s))
    _RATIOS.append(ratio)
    return ratio


def recorded() -> list[Ratio]:
    return list(_RATIOS)


def format_ratio_table(ratios: list[Ratio]) -> str:
    width = max([len("benchmark"), *(len(r.name) for r in ratios)])
    lines = [f"{'benchmark':<{width}}  {'ours':>10}  {'reference':>10}  {'speed-up':>8}"]
    lines.append("-" * len(lines[0]))
    for r in ratios:
        lines.append(f"{r.name:<{width}}  {_fmt_time(r.ours_s):>10}  {_fmt_time(r.reference_s):>10}  {r.speedup:>7.2f}x")
    return "\n".join(lines)


def _fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """pytest hook: print the ratio table once the session ends (when any ratio was recorded)."""
    if not _RATIOS:
        return
    terminalreporter.section("kernel vs reference (same run)")
    terminalreporter.write_line(format_ratio_table(_RATIOS))
    if config.getoption("benchmark_disable", default=False):
        terminalreporter.write_line("(benchmarks disabled: one round each, ratios are indicative only)")
