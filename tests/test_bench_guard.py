"""benchmarks/compare.py (the regression guard) and benchmarks/ratios.py (the ratio table)."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tagfold.pipeline.paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))
import compare  # noqa: E402
import ratios  # noqa: E402


def run_json(host: str, times: dict[str, tuple[float, float]]) -> dict:
    """A pytest-benchmark result: {name: (median_s, mean_s)}, the fields compare.py reads."""
    return {
        "machine_info": {"node": host},
        "benchmarks": [
            {"name": name.split("::")[-1], "fullname": name, "stats": {"median": median, "mean": mean, "min": median}}
            for name, (median, mean) in times.items()
        ],
    }


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


BASE = {"benchmarks/bench_a.py::bench_jw": (0.100, 0.110), "benchmarks/bench_a.py::bench_l2": (0.020, 0.021)}


def test_within_tolerance_passes(tmp_path, capsys):
    base = write(tmp_path / "store/Linux-CPython/0001_base.json", run_json("box", BASE))
    slower = {"benchmarks/bench_a.py::bench_jw": (0.119, 0.5), "benchmarks/bench_a.py::bench_l2": (0.015, 0.02)}
    current = write(tmp_path / "current.json", run_json("box", slower))
    assert compare.main([str(current), "--storage", str(tmp_path / "store"), "--tolerance", "20"]) == 0
    out = capsys.readouterr().out
    assert str(base) in out and "+19.0%" in out and "REGRESSED" not in out


def test_regression_beyond_tolerance_fails_and_names_the_benchmark(tmp_path, capsys):
    write(tmp_path / "store/m/0001_base.json", run_json("box", BASE))
    slower = {**BASE, "benchmarks/bench_a.py::bench_l2": (0.0250, 0.021)}  # +25% median
    current = write(tmp_path / "current.json", run_json("box", slower))
    assert compare.main([str(current), "--storage", str(tmp_path / "store"), "--tolerance", "20"]) == 1
    captured = capsys.readouterr()
    assert "+25.0%" in captured.out and "REGRESSED" in captured.out
    assert "bench_l2" in captured.err and "bench_jw" not in captured.err
    # The same run passes with a looser tolerance.
    assert compare.main([str(current), "--storage", str(tmp_path / "store"), "--tolerance", "30"]) == 0


def test_stat_choice_mean_or_both(tmp_path):
    base = write(tmp_path / "base.json", run_json("box", BASE))
    mean_only = {**BASE, "benchmarks/bench_a.py::bench_jw": (0.100, 0.200)}
    current = write(tmp_path / "current.json", run_json("box", mean_only))
    assert compare.main([str(current), "--baseline", str(base)]) == 0
    assert compare.main([str(current), "--baseline", str(base), "--stat", "mean"]) == 1
    assert compare.main([str(current), "--baseline", str(base), "--stat", "both"]) == 1


def test_newest_saved_run_is_the_baseline(tmp_path):
    write(tmp_path / "store/m/0001_old.json", run_json("box", {k: (1.0, 1.0) for k in BASE}))
    newest = write(tmp_path / "store/m/0002_new.json", run_json("box", BASE))
    assert compare.newest_saved_run(tmp_path / "store") == newest
    current = write(tmp_path / "current.json", run_json("box", {k: (v[0] * 1.5, v[1]) for k, v in BASE.items()}))
    assert compare.main([str(current), "--storage", str(tmp_path / "store")]) == 1


def test_missing_baseline_is_a_clear_error(tmp_path, capsys):
    current = write(tmp_path / "current.json", run_json("box", BASE))
    assert compare.main([str(current), "--storage", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "no baseline" in err and "does not exist" in err and "run `make bench`" in err
    (tmp_path / "empty").mkdir()
    assert compare.main([str(current), "--storage", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no saved benchmark JSON" in err and "run `make bench`" in err


def test_other_machine_is_refused_unless_allowed(tmp_path, capsys):
    base = write(tmp_path / "base.json", run_json("laptop", BASE))
    current = write(tmp_path / "current.json", run_json("ci-box", BASE))
    assert compare.main([str(current), "--baseline", str(base)]) == 2
    assert "'laptop'" in capsys.readouterr().err
    assert compare.main([str(current), "--baseline", str(base), "--allow-other-machine"]) == 0


def test_new_and_missing_benchmarks_are_listed_not_failed(tmp_path, capsys):
    base = write(tmp_path / "base.json", run_json("box", BASE))
    changed = {"benchmarks/bench_a.py::bench_jw": BASE["benchmarks/bench_a.py::bench_jw"],
               "benchmarks/bench_b.py::bench_new": (1.0, 1.0)}
    current = write(tmp_path / "current.json", run_json("box", changed))
    assert compare.main([str(current), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert " new" in out and " missing" in out


@pytest.mark.parametrize("content, message", [("{not json", "not JSON"), ('{"x": 1}', "no 'benchmarks' list"),
                                              ('{"benchmarks": [{"name": "b"}]}', "lacks name or stats")])
def test_malformed_files_name_the_file(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    current = write(tmp_path / "current.json", run_json("box", BASE))
    assert compare.main([str(current), "--baseline", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err


def test_real_pytest_benchmark_output_round_trip(tmp_path):
    """Autosave + --benchmark-json from pytest-benchmark itself, then compare.py on them."""
    (tmp_path / "bench_tiny.py").write_text(
        "def bench_sum(benchmark):\n"
        "    assert benchmark(sum, range(1000)) == 499500\n"
    )
    store, current = tmp_path / "store", tmp_path / "current.json"
    common = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "python_functions=bench_*",
              str(tmp_path / "bench_tiny.py"), f"--benchmark-storage={store}", "--benchmark-max-time=0.05"]
    subprocess.run([*common, "--benchmark-autosave"], cwd=tmp_path, check=True, capture_output=True)
    subprocess.run([*common, f"--benchmark-json={current}"], cwd=tmp_path, check=True, capture_output=True)
    assert compare.main([str(current), "--storage", str(store), "--tolerance", "100000"]) == 0
    slowed = json.loads(current.read_text())
    doubled = copy.deepcopy(slowed)
    for bench in doubled["benchmarks"]:
        bench["stats"]["median"] *= 3
    write(tmp_path / "slow.json", doubled)
    assert compare.main([str(tmp_path / "slow.json"), "--storage", str(store), "--tolerance", "100"]) == 1


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
