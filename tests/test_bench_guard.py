"""The benchmark regression guard (pytest-benchmark's --benchmark-compare with the flags
benchmarks/bench.mk passes) and benchmarks/ratios.py (the ratio table)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tagfold.pipeline.paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import ratios  # noqa: E402

TINY = """import os, time
def bench_sleep(benchmark):
    assert benchmark(time.sleep, float(os.environ["TINY_DELAY"])) is None
"""


def run_bench_mk(tmp_path: Path, *args: str, extra: str = "") -> subprocess.CompletedProcess:
    """make on benchmarks/bench.mk, with what the top-level Makefile provides (PY, install)."""
    wrapper = tmp_path / "wrapper.mk"
    wrapper.write_text(f"SHELL := /bin/bash\nPY := {sys.executable}\ninstall:\n"
                       f"include {PROJECT_ROOT}/benchmarks/bench.mk\n{extra}")
    return subprocess.run(["make", "--no-print-directory", "-s", "-f", str(wrapper), *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True)


def guard_flags(tmp_path: Path, *assignments: str) -> list[str]:
    r = run_bench_mk(tmp_path, "print-guard", *assignments, extra="print-guard:\n\t@echo $(BENCH_GUARD)\n")
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def run_tiny(tmp_path: Path, delay: float, *flags: str) -> subprocess.CompletedProcess:
    bench = tmp_path / "bench_tiny.py"
    bench.write_text(TINY)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
                           "python_functions=bench_*", str(bench), f"--benchmark-storage={tmp_path / 'store'}",
                           "--benchmark-max-time=0.05", "--benchmark-min-rounds=5", *flags],
                          cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "TINY_DELAY": str(delay)})


def test_regression_beyond_tolerance_fails_the_run(tmp_path):
    flags = guard_flags(tmp_path, "BENCH_TOLERANCE=20")
    assert flags == ["--benchmark-compare", "--benchmark-compare-fail=median:20%"]
    assert run_tiny(tmp_path, 0.001, "--benchmark-autosave").returncode == 0        # make bench: the baseline
    slower = run_tiny(tmp_path, 0.05, *flags)                       # 50x slower: beyond any load noise
    assert slower.returncode != 0, slower.stdout[-2000:]
    assert "Performance has regressed" in slower.stdout + slower.stderr and "bench_sleep" in slower.stdout
    # a run as fast as the baseline passes (the tolerance is wide: this machine may be busy)
    looser = guard_flags(tmp_path, "BENCH_TOLERANCE=1000")
    assert run_tiny(tmp_path, 0.001, *looser).returncode == 0
    # the statistic is a choice too
    assert guard_flags(tmp_path, "BENCH_STAT=mean")[1] == "--benchmark-compare-fail=mean:20%"


def test_no_baseline_is_a_clear_error(tmp_path):
    r = run_bench_mk(tmp_path, "bench-compare", f"BENCH_STORAGE={tmp_path / 'none'}")
    assert r.returncode == 2
    assert "no baseline under" in r.stderr and "run 'make bench' on this machine first" in r.stderr


def test_ratio_table():
    ratios._RATIOS.clear()
    ratio = ratios.record_ratio("jw native vs rapidfuzz", 0.002, 0.010)
    assert ratio.speedup == pytest.approx(5.0)
    table = ratios.format_ratio_table(ratios.recorded())
    assert "jw native vs rapidfuzz" in table and "5.00x" in table and "2 ms" in table and "10 ms" in table
    for bad in (0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="positive finite"):
            ratios.record_ratio("x", bad, 1.0)
    ratios._RATIOS.clear()


def test_ratio_table_is_printed_at_session_end(tmp_path):
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(PROJECT_ROOT / 'benchmarks')!r})\n"
        "from ratios import pytest_terminal_summary  # noqa: F401\n"
    )
    (tmp_path / "test_r.py").write_text(
        "from ratios import record_ratio\n"
        "def test_one():\n    record_ratio('kernel A', 0.5, 2.0)\n"
    )
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "kernel vs reference" in out and "kernel A" in out and "4.00x" in out
