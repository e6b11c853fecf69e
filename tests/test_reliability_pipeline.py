"""Reliability of `tagfold pipeline` run as a user runs it (a subprocess on real Last.fm tags):
SIGKILL at seeded random points and while it writes its Parquet outputs, then a re-run, must
give the same tables as an uninterrupted run; every output present after a kill is complete;
a second run on the same --out refuses; hostile tag files give a clear error naming file and
line, or with --skip-bad a run whose counts add up.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import hostile
from tagfold.pipeline.io import RUN_KEY, read_run_id

N_TAGS = 12_000
OUTPUTS = ("tags.parquet", "categories.parquet", "stage2.parquet", "stage3.parquet", "fits.parquet")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}


def cmd(inp: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tagfold.cli", "pipeline", "--input", str(inp), "--format", "lines",
            "--out", str(out), "--no-plots", *extra]


def run(inp, out, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(cmd(inp, out, *extra), env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tag_file(tmp_path_factory, real_tags) -> Path:
    p = tmp_path_factory.mktemp("tags") / "tags.txt"
    p.write_text("\n".join(real_tags[:N_TAGS]) + "\n", encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def reference(tag_file, tmp_path_factory) -> tuple[Path, float]:
    out = tmp_path_factory.mktemp("ref") / "out"
    t0 = time.monotonic()
    r = run(tag_file, out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, time.monotonic() - t0


def _without_run_id(table):
    return table.replace_schema_metadata({k: v for k, v in table.schema.metadata.items() if k != RUN_KEY})


def assert_same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        ta, tb = pq.read_table(a / name), pq.read_table(b / name)
        # every output names the run that wrote it: all of one run, and two runs differ only there
        assert len({read_run_id(a / n) for n in OUTPUTS}) == len({read_run_id(b / n) for n in OUTPUTS}) == 1
        assert read_run_id(a / name) != read_run_id(b / name)
        # tables and their saved config; never file bytes (Parquet embeds the writer version)
        assert _without_run_id(ta).equals(_without_run_id(tb), check_metadata=True), \
            f"{name} differs from the uninterrupted run"
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for measured in ("seconds", "peak_rss_mib", "encoded_this_run"):   # measurements of the run, not results
        sa.pop(measured), sb.pop(measured)
    assert sa == sb


def assert_nothing_half_written(out: Path) -> None:
    """Every output that exists is a complete file (readable to the end)."""
    for p in out.glob("*.parquet"):
        pq.read_table(p)
    for p in out.glob("*.json"):
        json.loads(p.read_text())


def _temp_files(out: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(out) if e.name.endswith(".tmp")]
    except FileNotFoundError:
        return []


def kill_at(inp: Path, out: Path, *, delay: float | None = None, nth_write: int | None = None) -> str:
    """SIGKILL a pipeline run after `delay` seconds, or the moment its `nth_write`-th atomic
    output write (a temporary file beside the target) is seen. Returns what it was doing."""
    proc = subprocess.Popen(cmd(inp, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: list[str] = []
    try:
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 120:
            if delay is not None and time.monotonic() - t0 >= delay:
                break
            if nth_write is not None:
                seen += [n for n in _temp_files(out) if n not in seen]
                if len(seen) >= nth_write:
                    break
            time.sleep(0.001 if nth_write else 0.01)
        state = "finished" if proc.poll() is not None else f"writing {seen[-1]}" if seen else "running"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return state


def test_sigkill_then_rerun_equals_uninterrupted(tag_file, reference, tmp_path):
    ref_out, ref_seconds = reference
    rng = random.Random(6)
    out = tmp_path / "out"
    states = []
    # seeded random points over the whole run, then precisely while Parquet outputs are written
    plan = [{"delay": rng.uniform(0.2, ref_seconds)} for _ in range(3)] + \
           [{"nth_write": n} for n in (2, 4, 6)]
    for kw in plan:
        states.append(kill_at(tag_file, out, **kw))
        assert_nothing_half_written(out)
    print("kill points:", states)
    assert sum(s.startswith("writing") for s in states) >= 2, states
    r = run(tag_file, out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not _temp_files(out), "temporary files left behind after a successful run"
    assert_same_outputs(ref_out, out)


def test_second_run_on_same_out_refuses(tag_file, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(cmd(tag_file, out), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        lock = out / ".tagfold.lock"
        while not (lock.exists() and lock.read_text().strip()):
            assert time.monotonic() < deadline and first.poll() is None, "first run never took the lock"
            time.sleep(0.005)
        second = run(tag_file, out)
        assert second.returncode == 3   # EXIT_LOCKED, the README's exit-code table
        assert "in use by another tagfold run" in second.stderr and str(first.pid) in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kernel dropped the dead run's lock: a new run proceeds
    r = run(tag_file, out)
    assert r.returncode == 0, r.stderr[-2000:]


# ----------------------------------------------------------------------------- hostile input

@pytest.mark.parametrize("make", [hostile.tags_invalid_utf8, hostile.tags_nul_bytes, hostile.tags_long_line])
def test_bad_tag_line_is_named_or_skipped_and_counted(make, tmp_path):
    path, bad_line = make(tmp_path)
    r = run(path, tmp_path / "strict")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert f"{path}:{bad_line}:" in r.stderr          # file and line named
    r = run(path, tmp_path / "skip", "--skip-bad")
    assert r.returncode == 0, r.stderr[-2000:]
    ingest = json.loads((tmp_path / "skip" / "summary.json").read_text())["ingest"]
    assert ingest["read"] == 6 and ingest["rejected"] == 1
    assert ingest["read"] == ingest["kept"] + ingest["merged"] + ingest["rejected"]
    assert pq.read_table(tmp_path / "skip" / "tags.parquet").num_rows == ingest["kept"]


def test_unique_tags_every_bad_row_counted(tmp_path):
    path, expected = hostile.unique_tags_mixed(tmp_path)
    r = subprocess.run([sys.executable, "-m", "tagfold.cli", "pipeline", "--input", str(path), "--format",
                        "unique_tags", "--out", str(tmp_path / "o"), "--no-plots", "--skip-bad"],
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ingest = json.loads((tmp_path / "o" / "summary.json").read_text())["ingest"]
    assert {k: ingest[k] for k in expected} == expected
    tags = pq.read_table(tmp_path / "o" / "tags.parquet").to_pydict()
    assert dict(zip(tags["tag"], tags["count"])) == {"rock": 101, "sad": 5, "happy": 9}


def test_whitespace_only_file_is_an_error_not_an_empty_run(tmp_path):
    path = hostile.tags_whitespace_only(tmp_path)
    r = run(path, tmp_path / "strict")
    assert r.returncode == 1 and f"{path}:1:" in r.stderr and "Traceback" not in r.stderr
    # with --skip-bad every line is rejected and counted; a run with no tag left stops clearly
    r = run(path, tmp_path / "skip", "--skip-bad")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "no usable tags" in r.stderr and "rejected 5" in r.stderr
    assert not (tmp_path / "skip" / "stage3.parquet").exists()


@pytest.mark.parametrize("make, message", [
    (hostile.sqlite_empty, "empty"),
    (hostile.sqlite_truncated, "not a SQLite database"),
    (hostile.sqlite_other_schema, "lacks table(s) tids, tags, tid_tag"),
])
@pytest.mark.parametrize("fmt", ["auto", "sqlite"])
def test_bad_sqlite_is_a_clear_error(make, message, fmt, tmp_path):
    path = make(tmp_path)
    for extra in ((), ("--skip-bad",)):
        r = subprocess.run([sys.executable, "-m", "tagfold.cli", "pipeline", "--input", str(path), "--format",
                            fmt, "--out", str(tmp_path / "o"), "--no-plots", *extra],
                           env=ENV, capture_output=True, text=True, timeout=300)
        assert r.returncode == 1, (extra, r.stderr[-2000:])
        assert str(path) in r.stderr and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert not (tmp_path / "o" / "tags.parquet").exists()


def test_good_sqlite_counts_add_up(tmp_path):
    path = hostile.msd_sqlite(tmp_path / "lastfm_tags.db", n_tracks=30)
    r = subprocess.run([sys.executable, "-m", "tagfold.cli", "pipeline", "--input", str(path), "--out",
                        str(tmp_path / "o"), "--no-plots", "--vectors", "glove"],
                       env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    ingest = json.loads((tmp_path / "o" / "summary.json").read_text())["ingest"]
    assert ingest["read"] == 20 and ingest["read"] == ingest["kept"] + ingest["merged"] + ingest["rejected"]
    assert ingest["links_read"] == 90 == ingest["links_kept"] + ingest["links_merged"] + ingest["links_rejected"]
    assert pq.read_table(tmp_path / "o" / "track_tags.parquet").num_rows == ingest["links_kept"]


def test_every_writing_command_refuses_a_locked_out(reference, tag_file, tmp_path):
    """Each command that writes a folder takes its lock; with the lock held (as by a running
    job) it refuses with one clear line and no traceback, and writes nothing there."""
    from tagfold.pipeline.io import output_lock
    ref, _ = reference
    (tmp_path / "audio").mkdir()
    hostile.wav_ok(tmp_path / "audio" / "a.wav", 1.0)
    manifest = hostile.manifest(tmp_path / "manifest.parquet", tmp_path, [("a", "audio/a.wav")])
    out = tmp_path / "locked"
    commands = {
        "pipeline": ["--input", str(tag_file), "--format", "lines"],
        "ingest": [str(tag_file)],
        "categorize": ["--tags", str(ref / "tags.parquet")],
        "collapse": ["--tags", str(ref / "tags.parquet")],
        "embed": ["--tags", str(ref / "tags.parquet"), "--stage2", str(ref / "stage2.parquet")],
        "labels": ["--manifest", str(manifest), "--track-tags", "x", "--tags", "x", "--stage2", "x", "--stage3", "x"],
        "demo-data": ["--n", "2"],
        "prep-audio": ["--manifest", str(manifest)],
        "train": ["--labels", str(tmp_path / "labels.parquet"), "--prep", str(tmp_path / "prep"), "--device", "cpu"],
        "evaluate": ["--checkpoint", str(tmp_path / "none.pt")],
    }
    with output_lock(out):
        before = sorted(p.name for p in out.iterdir())
        for name, args in commands.items():
            r = subprocess.run([sys.executable, "-m", "tagfold.cli", name, *args, "--out", str(out)],
                               env=ENV, capture_output=True, text=True, timeout=300)
            assert r.returncode != 0, (name, r.stderr[-2000:])
            assert "in use by another tagfold run" in r.stderr and "Traceback" not in r.stderr, (name, r.stderr[-2000:])
            assert sorted(p.name for p in out.iterdir()) == before, name


# ----------------------------------------------------------------------------- run ids

def _track_csv(path: Path, tags: list[str], n_tracks: int, seed: int) -> Path:
    rng = random.Random(seed)
    rows = [f"T{i:05d},{';'.join(rng.sample(tags, 3))}" for i in range(n_tracks)]
    path.write_text("track_id,tags\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_killed_rerun_into_an_old_folder_is_never_mixed(real_tags, tmp_path):
    """New tags into a folder that holds an earlier run, killed right after stage2.parquet: no
    output of the earlier run is left for a reader to trust, and an earlier run's stage3.parquet
    put back beside the new files (as a user's copy, or an older tagfold that left it) is refused
    by labels and query, naming the file."""
    import shutil
    old = _track_csv(tmp_path / "old.csv", real_tags[:3000], 400, seed=1)
    new = _track_csv(tmp_path / "new.csv", real_tags[3000:6000], 400, seed=2)
    out = tmp_path / "out"
    r = run(old, out, "--format", "csv")
    assert r.returncode == 0, r.stderr[-2000:]
    old_run = read_run_id(out / "stage3.parquet")
    assert old_run and {read_run_id(out / n) for n in OUTPUTS} == {old_run}
    shutil.copy(out / "stage3.parquet", tmp_path / "old_stage3.parquet")
    proc = subprocess.Popen(cmd(new, out, "--format", "csv"), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if read_run_id(out / "stage2.parquet") not in (old_run, None):   # None: not there yet
                break
            time.sleep(0.001)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert read_run_id(out / "stage2.parquet") not in (old_run, None), "the kill came before stage2.parquet"
    assert all(read_run_id(out / n) != old_run for n in OUTPUTS if (out / n).exists())
    if (out / "stage3.parquet").exists():
        pytest.fail("the kill came after the new run had finished")
    shutil.copy(tmp_path / "old_stage3.parquet", out / "stage3.parquet")
    (tmp_path / "audio").mkdir()
    hostile.wav_ok(tmp_path / "audio" / "a.wav", 1.0)
    manifest = hostile.manifest(tmp_path / "manifest.parquet", tmp_path, [("T00000", "audio/a.wav")])
    labels = subprocess.run([sys.executable, "-m", "tagfold.cli", "labels", "--manifest", str(manifest),
                             "--track-tags", str(out / "track_tags.parquet"), "--tags", str(out / "tags.parquet"),
                             "--stage2", str(out / "stage2.parquet"), "--stage3", str(out / "stage3.parquet"),
                             "--out", str(tmp_path / "labels")], env=ENV, capture_output=True, text=True, timeout=300)
    assert labels.returncode == 1 and "Traceback" not in labels.stderr, labels.stderr[-2000:]
    assert f"{out / 'stage3.parquet'} is from run {old_run}" in labels.stderr, labels.stderr
    assert not (tmp_path / "labels" / "labels_stage3.parquet").exists()
    query = subprocess.run([sys.executable, "-m", "tagfold.cli", "query", "rock", "--out", str(out), "--stage", "3"],
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert query.returncode == 1 and f"is from run {old_run}" in query.stderr, query.stderr[-2000:]
    assert "Traceback" not in query.stderr
    # the re-run finishes the job: one run again, and labels accept it
    r = run(new, out, "--format", "csv")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len({read_run_id(out / n) for n in OUTPUTS}) == 1


def test_outputs_of_different_runs_are_refused_by_name(tmp_path):
    """Two complete runs in two folders: an input set taking files from both is refused."""
    import pyarrow as pa

    from tagfold.pipeline.io import MixedRuns, check_same_run, start_run, write_parquet
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        start_run(d)
        write_parquet(pa.table({"x": [1]}), d / "stage2.parquet")
        write_parquet(pa.table({"x": [1]}), d / "stage3.parquet")
    assert check_same_run([a / "stage2.parquet", a / "stage3.parquet"]) == read_run_id(a / "stage3.parquet")
    with pytest.raises(MixedRuns, match="different runs") as e:
        check_same_run([a / "stage2.parquet", b / "stage3.parquet"])
    assert str(a / "stage2.parquet") in str(e.value) and str(b / "stage3.parquet") in str(e.value)


def test_stage_commands_keep_their_inputs_run(real_tags, tmp_path):
    """A stage command's outputs carry its input's run, in whatever folder they go; a stage fed
    the outputs of two runs (tags re-ingested since Stage II) refuses, naming both files."""
    src = tmp_path / "tags.txt"
    src.write_text("\n".join(real_tags[:2000]) + "\n", encoding="utf-8")
    a, b = tmp_path / "a", tmp_path / "b"

    def tagfold(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tagfold.cli", *args], env=ENV, capture_output=True, text=True,
                              timeout=300)

    assert tagfold("ingest", str(src), "--out", str(a)).returncode == 0
    r = tagfold("collapse", "--tags", str(a / "tags.parquet"), "--out", str(b))
    assert r.returncode == 0, r.stderr[-2000:]
    first = read_run_id(a / "tags.parquet")
    assert first and read_run_id(b / "stage2.parquet") == first
    assert tagfold("ingest", str(src), "--out", str(a)).returncode == 0     # the same tags, a new run
    assert read_run_id(a / "tags.parquet") != first
    r = tagfold("embed", "--tags", str(a / "tags.parquet"), "--stage2", str(b / "stage2.parquet"), "--out", str(b))
    assert r.returncode == 1 and "different runs" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert str(a / "tags.parquet") in r.stderr and str(b / "stage2.parquet") in r.stderr
    assert not (b / "stage3.parquet").exists()
