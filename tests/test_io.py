import pyarrow as pa
import pyarrow.parquet  # noqa: F401  (pa.parquet)
import pytest

from tagfold.pipeline.io import atomic_path, read_config, write_parquet
from tagfold.pipeline.selected import load_selected


def test_write_parquet_keeps_config_and_leaves_no_temp(tmp_path):
    table = pa.table({"tag_id": pa.array([0, 1], pa.int32()), "tag": ["rock", "hip hop"]})
    out = write_parquet(table, tmp_path / "tags.parquet", {"score_level": 0.9})
    assert read_config(out) == {"score_level": 0.9}
    assert pa.parquet.read_table(out).column("tag").to_pylist() == ["rock", "hip hop"]
    assert [p.name for p in tmp_path.iterdir()] == ["tags.parquet"]


def test_failed_write_leaves_previous_file_untouched(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("good")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_selected_tags_are_the_thesis_fifty():
    selected = load_selected()
    assert len(selected) == 50
    assert selected.tags[:3] == ("rock", "pop", "indie")
    assert {c: selected.categories.count(c) for c in set(selected.categories)} == {
        "genre": 18, "emotion": 18, "descriptive": 9, "number": 5}


def test_selected_tags_bad_category_names_line(tmp_path):
    bad = tmp_path / "sel.csv"
    bad.write_text("tag,category\nrock,genre\nsad,feeling\n")
    with pytest.raises(ValueError, match=r"sel.csv:3: category 'feeling'"):
        load_selected(bad)


def test_second_run_on_same_output_dir_is_refused(tmp_path):
    import subprocess
    import sys

    from tagfold.pipeline.io import OutputLocked, output_lock

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from tagfold.pipeline.io import output_lock\n"
         f"with output_lock({str(tmp_path)!r}):\n print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLocked, match=f"in use by another tagfold run \\(pid {holder.pid}\\)"):
            with output_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL released the lock: the next run proceeds.
    with output_lock(tmp_path):
        pass


def test_outputs_get_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        out = write_parquet(pa.table({"x": [1]}), tmp_path / "x.parquet")
    finally:
        os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o644


def test_die_with_parent_kills_the_child_when_its_parent_is_killed(tmp_path):
    """A process that called die_with_parent(ppid) goes when that parent is SIGKILLed (it would
    otherwise sleep on for a minute as an orphan): how prep-audio's pool workers and the
    pipeline's side process never outlive a killed run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "child.pid"
    child = ("import os, sys, time; from tagfold.pipeline.io import die_with_parent; "
             "die_with_parent(os.getppid()); open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c",
                               "import subprocess, sys, time; "
                               f"subprocess.Popen([sys.executable, '-c', {child!r}, sys.argv[1]]); time.sleep(60)",
                               str(pid_file)])
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.01)
        grandchild = int(pid_file.read_text())
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()

    def alive(pid: int) -> bool:
        try:
            return "zombie" not in open(f"/proc/{pid}/status").read().split("State:")[1].splitlines()[0]
        except (OSError, IndexError):
            return False

    deadline = time.monotonic() + 10
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    still = alive(grandchild)
    if still:
        os.kill(grandchild, signal.SIGKILL)
    assert not still, "the child outlived its killed parent"
