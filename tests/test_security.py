"""Security: checkpoints and shards load without executing code, and paths read from manifests
and CSVs cannot leave the configured data root unless the user allows it.

The malicious checkpoint is a real pickle whose __reduce__ runs `os.system` to create a marker
file; it carries a valid tagfold header and checksum, so only the safe unpickler stands between
it and the shell. Every entry point that loads a checkpoint (the library, `tagfold train
--resume`, `tagfold evaluate`, `tagfold predict`) must refuse it and leave no marker.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings, strategies as st

import hostile
from tagfold.training import checkpoint as ckpt

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious_checkpoint(path: Path, marker: Path, with_header: bool = True) -> Path:
    buf = io.BytesIO()
    # a plausible state dict with the exploit tucked inside, saved the way torch would
    torch.save({"config": {"model": "wave"}, "epoch": 1, "model": {"w": _Exploit(marker)}}, buf)
    payload = buf.getvalue()
    header = ckpt.MAGIC + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n"
    path.write_bytes((header if with_header else b"") + payload)
    return path


def test_exploit_is_live(tmp_path):
    """Guard against a test that cannot fail: unpickled unsafely, this payload does run."""
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker, with_header=False)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_library_refuses_malicious_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(ckpt.CheckpointError, match="refused to load") as err:
        ckpt.load(path)
    assert not marker.exists()
    # the message names what was refused, and never suggests the unsafe way round it
    assert "posix.system" in str(err.value) and "weights_only" not in str(err.value)
    bare = malicious_checkpoint(tmp_path / "bare.pt", marker, with_header=False)
    with pytest.raises(ckpt.CheckpointError, match="not a tagfold checkpoint"):
        ckpt.load(bare)
    assert not marker.exists()


def test_plain_pickle_with_forged_header_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    path = tmp_path / "pickle.pt"
    path.write_bytes(ckpt.MAGIC + b" " + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(ckpt.CheckpointError):
        ckpt.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_cli_refuses_malicious_checkpoint(command, tmp_path):
    marker = tmp_path / "pwned"
    if command == "train":
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        malicious_checkpoint(ckpt.epoch_path(run_dir, 1), marker)
        labels = tmp_path / "labels.parquet"
        _tiny_labels(labels)
        args = ["train", "--labels", str(labels), "--prep", str(tmp_path), "--out", str(run_dir),
                "--resume", "--device", "cpu", "--model", "wave"]
    else:
        evil = malicious_checkpoint(tmp_path / "evil.pt", marker)
        audio = hostile.wav_ok(tmp_path / "a.wav", 1.0)
        args = (["evaluate", "--checkpoint", str(evil), "--out", str(tmp_path / "eval"), "--device", "cpu"]
                if command == "evaluate" else ["predict", str(audio), "--checkpoint", str(evil)])
    r = subprocess.run([sys.executable, "-m", "tagfold.cli", *args], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0
    assert "refused to load" in r.stderr and "posix.system" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "weights_only" not in r.stderr, r.stderr[-2000:]
    assert not marker.exists()


def _tiny_labels(path: Path) -> None:
    import pyarrow as pa

    from tagfold.pipeline.io import write_parquet
    write_parquet(pa.table({"track_id": ["a", "b"], "split": ["train", "valid"],
                            "rock": pa.array([1, 0], pa.uint8())}), path, {"categories": ["genre"]})


def test_object_shard_is_refused_not_unpickled(tmp_path):
    """A prep shard replaced by a pickled object array must not run code in the loader."""
    from tagfold.training.loaders import ShardStore
    marker = tmp_path / "pwned"
    prep = tmp_path / "prep"
    (tmp_path / "audio").mkdir()
    hostile.wav_ok(tmp_path / "audio" / "a.wav", 1.0)
    manifest = hostile.manifest(tmp_path / "m.parquet", tmp_path, [("a", "audio/a.wav")])
    from tagfold.pipeline.audio.audio_prep import PrepConfig, prep_audio
    prep_audio(PrepConfig(str(manifest), str(prep)), progress=False)
    np.save(prep / "shard-00000.npy", np.array([_Exploit(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="Python objects|pickle"):
        ShardStore(prep).read("a", 0, 100)
    assert not marker.exists()


# ----------------------------------------------------------------------------- data root

@pytest.fixture
def escape_layout(tmp_path) -> tuple[Path, Path]:
    """root/audio/in.wav inside the data root; outside/secret.wav beside it; a symlink inside
    the root that points outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "audio").mkdir(parents=True)
    outside.mkdir()
    hostile.wav_ok(root / "audio" / "in.wav", 1.0, seed=1)
    hostile.wav_ok(outside / "secret.wav", 1.0, seed=2)
    (root / "audio" / "link.wav").symlink_to(outside / "secret.wav")
    return root, outside


ESCAPES = {"dotdot": "../outside/secret.wav", "absolute": None, "symlink": "audio/link.wav"}


def _escape_rows(outside: Path) -> list[tuple[str, str]]:
    rows = [("inside", "audio/in.wav")]
    rows += [(k, v or str(outside / "secret.wav")) for k, v in ESCAPES.items()]
    return rows


def _prep(manifest: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tagfold.cli", "prep-audio", "--manifest", str(manifest),
                           "--out", str(out), *extra], env=ENV, capture_output=True, text=True, timeout=300)


def test_prep_refuses_paths_outside_the_data_root(escape_layout, tmp_path):
    root, outside = escape_layout
    manifest = hostile.manifest(tmp_path / "m.parquet", root, _escape_rows(outside))
    r = _prep(manifest, tmp_path / "prep")
    assert r.returncode == 0, r.stderr[-2000:]
    index = pq.read_table(tmp_path / "prep" / "index.parquet")
    rejects = pq.read_table(tmp_path / "prep" / "rejects.parquet")
    assert index.column("track_id").to_pylist() == ["inside"]
    reasons = dict(zip(rejects.column("track_id").to_pylist(), rejects.column("reason").to_pylist()))
    assert set(reasons) == set(ESCAPES)
    for tid, reason in reasons.items():
        assert reason.startswith("outside_root") and str(root) in reason, (tid, reason)
    assert "read 4 = kept 1 + rejected 3" in r.stdout


def test_prep_allows_outside_root_when_asked(escape_layout, tmp_path):
    root, outside = escape_layout
    manifest = hostile.manifest(tmp_path / "m.parquet", root, _escape_rows(outside))
    r = _prep(manifest, tmp_path / "prep", "--allow-outside-root")
    assert r.returncode == 0, r.stderr[-2000:]
    index = pq.read_table(tmp_path / "prep" / "index.parquet")
    assert sorted(index.column("track_id").to_pylist()) == sorted(["inside", *ESCAPES])


def test_manifest_csv_paths_cannot_escape(escape_layout, tmp_path):
    from tagfold.pipeline.audio.manifest import build_manifest_from_folder
    root, outside = escape_layout
    csv = root / "tracks.csv"
    csv.write_text("track_id,file\ninside,audio/in.wav\nbad,../outside/secret.wav\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"track 'bad'.*outside the data root"):
        build_manifest_from_folder(root / "audio", csv)
    table = build_manifest_from_folder(root / "audio", csv, allow_outside_root=True)
    assert table.column("track_id").to_pylist() == ["inside", "bad"]


# ----------------------------------------------------------------------------- track ids and --out

@pytest.mark.parametrize("bad", hostile.HOSTILE_TRACK_IDS)
def test_manifest_refuses_unsafe_track_ids(bad, tmp_path):
    from tagfold.pipeline.audio.manifest import BadTrack, check_track_id
    with pytest.raises(BadTrack, match="not allowed"):
        check_track_id(bad)


def test_manifest_csv_bad_ids_named_or_skipped_and_counted(tmp_path):
    (tmp_path / "audio").mkdir()
    hostile.wav_ok(tmp_path / "audio" / "a.wav", 1.0)
    import csv as csv_mod
    with open(tmp_path / "tracks.csv", "w", newline="", encoding="utf-8") as f:
        w = csv_mod.writer(f)
        w.writerow(["track_id", "file"])
        w.writerow(["good-1", "audio/a.wav"])
        w.writerow(["../../../somewhere", "audio/a.wav"])     # line 3
        w.writerow(["new\nline", "audio/a.wav"])              # a quoted field with a line break
        w.writerow(["good.2", "audio/a.wav"])
    cmd = [sys.executable, "-m", "tagfold.cli", "manifest", "--csv", str(tmp_path / "tracks.csv")]
    r = subprocess.run([*cmd, "--out", str(tmp_path / "m.parquet")], env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"tracks.csv:3: track id '../../../somewhere' is not allowed" in r.stderr, r.stderr
    assert not (tmp_path / "m.parquet").exists()
    r = subprocess.run([*cmd, "--skip-bad", "--out", str(tmp_path / "m.parquet")], env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "read 4 = kept 2 + rejected 2" in r.stderr and r.stderr.count("rejected: track id") == 2
    assert pq.read_table(tmp_path / "m.parquet").column("track_id").to_pylist() == ["good-1", "good.2"]


def _tree(d: Path) -> set[str]:
    return {str(p.relative_to(d)) for p in d.rglob("*")}


def test_prep_writes_nothing_outside_out_whatever_the_track_ids(tmp_path):
    """A hand-made manifest (not built by `tagfold manifest`) with ids that would name files
    elsewhere: each is rejected as bad_track_id, the good one kept, and nothing appears outside --out."""
    data = tmp_path / "data"
    (data / "audio").mkdir(parents=True)
    hostile.wav_ok(data / "audio" / "a.wav", 1.0)
    ids = ["ok", f"{tmp_path}/abs_escape", "../../../escape", "sub/dir", "new\nline"]
    manifest = hostile.manifest(tmp_path / "m.parquet", data, [(t, "audio/a.wav") for t in ids])
    before = _tree(tmp_path)
    r = _prep(manifest, tmp_path / "prep", "--format", "flac")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "read 5 = kept 1 + rejected 4" in r.stdout
    rejects = pq.read_table(tmp_path / "prep" / "rejects.parquet").to_pydict()
    assert sorted(rejects["track_id"]) == sorted(ids[1:])
    assert all(reason.startswith("bad_track_id") for reason in rejects["reason"])
    new = {p for p in _tree(tmp_path) - before if not p.startswith("prep")}
    assert new == set(), new
    assert sorted(p.name for p in (tmp_path / "prep" / "flac").iterdir()) == ["ok.flac"]


def test_prep_refuses_a_planted_symlink_out_of_out(tmp_path):
    data = tmp_path / "data"
    (data / "audio").mkdir(parents=True)
    hostile.wav_ok(data / "audio" / "a.wav", 1.0)
    manifest = hostile.manifest(tmp_path / "m.parquet", data, [("a", "audio/a.wav")])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "prep").mkdir()
    (tmp_path / "prep" / "flac").symlink_to(elsewhere)
    r = _prep(manifest, tmp_path / "prep", "--format", "flac")
    assert r.returncode != 0 and "outside --out" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert list(elsewhere.iterdir()) == []


def test_symlink_loop_is_one_reject_in_manifest_and_in_prep(tmp_path):
    root = tmp_path / "root"
    (root / "audio").mkdir(parents=True)
    hostile.wav_ok(root / "audio" / "a.wav", 1.0)
    hostile.symlink_loop(root / "audio", "loop1.wav")
    csv_path = root / "tracks.csv"
    csv_path.write_text("track_id,file\na,audio/a.wav\nlooped,audio/loop1.wav\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "tagfold.cli", "manifest", "--csv", str(csv_path)]
    r = subprocess.run([*cmd, "--out", str(tmp_path / "m.parquet")], env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "tracks.csv:3:" in r.stderr and "symlink_loop" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([*cmd, "--skip-bad", "--out", str(tmp_path / "m.parquet")], env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "read 2 = kept 1 + rejected 1" in r.stderr, r.stderr[-2000:]
    # a loop that appears after the manifest was built: prep rejects that track and goes on
    csv_path.write_text("track_id,file\na,audio/a.wav\nb,audio/b.wav\n", encoding="utf-8")
    hostile.wav_ok(root / "audio" / "b.wav", 1.0, seed=3)
    r = subprocess.run([*cmd, "--out", str(tmp_path / "m2.parquet")], env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    (root / "audio" / "b.wav").unlink()
    (root / "audio" / "b.wav").symlink_to(root / "audio" / "loop1.wav")
    r = _prep(tmp_path / "m2.parquet", tmp_path / "prep")
    assert r.returncode == 0 and "read 2 = kept 1 + rejected 1" in r.stdout, r.stderr[-2000:]
    reasons = pq.read_table(tmp_path / "prep" / "rejects.parquet").column("reason").to_pylist()
    assert len(reasons) == 1 and reasons[0].startswith("symlink_loop"), reasons


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=140), st.from_regex(r"[A-Za-z0-9._/\\-]{0,12}", fullmatch=True)))
def test_every_accepted_track_id_names_a_file_directly_inside_out(tid):
    """Any text: an accepted id names one plain file in the output folder itself (no separator, no
    '..', no hidden or option-like name, no whitespace); the ids above are the named regressions."""
    from tagfold.pipeline.audio.manifest import BadTrack, check_track_id
    out = Path("/tmp/tagfold-out")
    try:
        check_track_id(tid)
    except BadTrack:
        assert tid == "" or len(tid) > 128 or not tid.isascii() or any(c in tid for c in "/\\ \n\t") or \
            tid[0] in ".-" or not all(c.isalnum() or c in "._-" for c in tid)
        return
    dest = out / f"{tid}.flac"
    assert dest.parent == out and os.path.normpath(dest) == str(dest) and dest.name == f"{tid}.flac"
    assert not tid.startswith((".", "-")) and tid.strip() == tid and 1 <= len(tid) <= 128


def test_manifest_and_prep_inputs_that_are_not_files(tmp_path):
    """A FIFO or folder given as the track CSV, a missing or foreign manifest: one line, no hang."""
    fifo = hostile.fifo(tmp_path, "tracks.csv")
    notes = hostile.text_as_audio(tmp_path, "notes.parquet")
    cases = {("manifest", "--csv", str(fifo)): "not regular file (a named pipe (FIFO))",
             ("manifest", "--csv", str(tmp_path)): "not regular file (a directory)",
             ("manifest", "--csv", str(tmp_path / "none.csv")): "missing file",
             ("prep-audio", "--manifest", str(tmp_path / "none.parquet")): "no such file",
             ("prep-audio", "--manifest", str(notes)): "not a Parquet file"}
    for args, message in cases.items():
        r = subprocess.run([sys.executable, "-m", "tagfold.cli", *args, "--out", str(tmp_path / "o")], env=ENV,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr[-2000:])
