"""Hostile inputs for the reliability tests, generated on the fly (nothing binary is checked in).

Every generator writes one file (or a small set) under a directory it is given and returns the
path, plus what a correct reader must make of it where that is not obvious. The generators are
cheap: the "10-hour" WAV is a real, valid header over a sparse file, so it costs no disk and no
time to create, but a reader that decodes it instead of checking its header first would need
about 2.3 GB of float32 and minutes of CPU.
"""
from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import numpy as np

from tagfold.pipeline.constants import SAMPLE_RATE as SR


# ----------------------------------------------------------------------------- tag files

def good_tags(n: int = 20) -> list[str]:
    base = ["rock", "sad", "hip hop", "80s", "chill", "female vocalists", "jazz", "electronic",
            "indie", "metal", "happy", "dance", "punk", "soul", "blues", "pop", "folk", "ambient",
            "classic rock", "acoustic"]
    return (base * (n // len(base) + 1))[:n]


def tags_invalid_utf8(d: Path) -> tuple[Path, int]:
    """A one-tag-per-line file whose line 3 is Latin-1 bytes: returns (path, bad line number)."""
    lines = [t.encode() for t in good_tags(6)]
    lines[2] = "caf\xe9 del mar".encode("latin-1")   # 0xe9 alone is not UTF-8
    p = d / "invalid_utf8.txt"
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p, 3


def tags_nul_bytes(d: Path) -> tuple[Path, int]:
    lines = [t.encode() for t in good_tags(6)]
    lines[4] = b"ro\x00ck"
    p = d / "nul.txt"
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p, 5


def tags_long_line(d: Path, n_chars: int = 100_000) -> tuple[Path, int]:
    lines = good_tags(5)
    lines.insert(1, "x" * n_chars)
    p = d / "long_line.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p, 2


def tags_whitespace_only(d: Path) -> Path:
    p = d / "whitespace.txt"
    p.write_text("   \n\t\t\n \u00a0 \n\n  \t \n", encoding="utf-8")
    return p


def unique_tags_mixed(d: Path) -> tuple[Path, dict]:
    """`tag<TAB>count` with every kind of bad row; returns (path, expected counts)."""
    rows = [b"rock\t100", b"sad\t5", b"no tab here", b"caf\xe9\t3", b"ja\x00zz\t2", b"\t7",
            b"y" * 100_000 + b"\t1", b"Rock\t1", b"chill\tmany", b"   \t4", b"happy\t9"]
    p = d / "unique_mixed.txt"
    p.write_bytes(b"\n".join(rows) + b"\n")
    # kept: rock, sad, happy; merged: Rock; rejected: the other 7
    return p, {"read": 11, "kept": 3, "merged": 1, "rejected": 7}


# ----------------------------------------------------------------------------- SQLite

def msd_sqlite(path: Path, n_tracks: int = 30, seed: int = 0) -> Path:
    """A small database with the MSD Last.fm schema (tids, tags, tid_tag)."""
    rng = np.random.default_rng(seed)
    tags = good_tags(20)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE tids (tid TEXT); CREATE TABLE tags (tag TEXT);"
                      "CREATE TABLE tid_tag (tid INT, tag INT, val FLOAT);")
    con.executemany("INSERT INTO tids VALUES (?)", [(f"TR{i:016d}",) for i in range(n_tracks)])
    con.executemany("INSERT INTO tags VALUES (?)", [(t,) for t in tags])
    links = [(i + 1, int(t) + 1, float(rng.integers(1, 101)))
             for i in range(n_tracks) for t in rng.choice(len(tags), 3, replace=False)]
    con.executemany("INSERT INTO tid_tag VALUES (?, ?, ?)", links)
    con.commit()
    con.close()
    return path


def sqlite_empty(d: Path) -> Path:
    p = d / "empty.db"
    p.write_bytes(b"")
    return p


def sqlite_truncated(d: Path) -> Path:
    """A real MSD-schema database cut to its first 3 pages (header intact, tables gone)."""
    full = msd_sqlite(d / "full.db", n_tracks=400)
    data = full.read_bytes()
    p = d / "truncated.db"
    p.write_bytes(data[: 3 * 4096])
    assert len(data) > 3 * 4096, "the fixture database must be larger than what is kept"
    return p


def sqlite_other_schema(d: Path) -> Path:
    p = d / "other.db"
    p.unlink(missing_ok=True)
    con = sqlite3.connect(p)
    con.executescript("CREATE TABLE songs (id INT, title TEXT); INSERT INTO songs VALUES (1, 'x');")
    con.commit()
    con.close()
    return p


def csv_stray_quote(d: Path, n_rows: int = 1000, bad_row: int = 3) -> tuple[Path, int]:
    """A `track_id,tags` CSV of n_rows tracks whose row `bad_row` opens a quote it never closes
    (`T2,"unterminated;rock`): standard CSV reading would glue every later row into that field.
    Returns (path, the bad row's line number)."""
    rows = [f"T{i},tag{i};rock" for i in range(n_rows)]
    rows[bad_row - 1] = f'T{bad_row - 1},"unterminated;rock'
    p = d / "stray_quote.csv"
    p.write_text("track_id,tags\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return p, bad_row + 1


def csv_multiline_field(d: Path) -> tuple[Path, int]:
    """A quoted tags field running over a line break (legal in RFC 4180, refused by ingest: each
    line is one track). Returns (path, line number where the field opens)."""
    p = d / "multiline.csv"
    p.write_text('track_id,tags\nT1,rock;pop\nT2,"jazz;\nblues"\nT3,soul\n', encoding="utf-8")
    return p, 3


def tags_format_characters(d: Path) -> tuple[Path, dict]:
    """Tags that differ from 'rock' only by Unicode format characters (zero-width space, bidi
    marks, BOM, soft hyphen) or compatibility forms, and one that is only a zero-width space.
    Returns (path, expected counts): all of them are 'rock' but the empty one."""
    lines = ["rock", "ro\u200bck", "\u202arock\u202c", "\u2067rock\u2069", "\ufeffrock", "ro\u00adck",
             "\uff52\uff4f\uff43\uff4b", "\u200b"]
    p = d / "format_chars.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p, {"read": 8, "kept": 1, "merged": 6, "rejected": 1}


def sqlite_bad_val(path: Path) -> tuple[Path, list[int]]:
    """msd_sqlite with link weights -50, 100.5 and 1e9 (Last.fm's are 0..100): returns (path,
    their tid_tag rowids)."""
    msd_sqlite(path, n_tracks=30)
    con = sqlite3.connect(path)
    bad = [(-50.0, 2), (100.5, 7), (1e9, 11)]
    con.executemany("UPDATE tid_tag SET val = ? WHERE rowid = ?", bad)
    con.commit()
    con.close()
    return path, [rowid for _, rowid in bad]


# ----------------------------------------------------------------------------- audio

def tone(seconds: float, sr: int = SR, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    noise = 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def wav_ok(path: Path, seconds: float = 2.0, sr: int = SR, seed: int = 0, subtype: str = "PCM_16") -> Path:
    import soundfile as sf
    sf.write(str(path), tone(seconds, sr, 300 + 50 * seed, seed), sr, subtype=subtype)
    return path


def wav_truncated(d: Path) -> Path:
    """A 2 s WAV cut at 40% of its bytes: the header still claims 2 s."""
    full = wav_ok(d / "full_for_truncation.wav", 2.0)
    data = full.read_bytes()
    p = d / "truncated.wav"
    p.write_bytes(data[: int(len(data) * 0.4)])
    full.unlink()
    return p


def zero_bytes(d: Path, name: str = "zero.mp3") -> Path:
    p = d / name
    p.write_bytes(b"")
    return p


def random_bytes(d: Path, name: str = "random.mp3", n: int = 50_000, seed: int = 0) -> Path:
    p = d / name
    p.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return p


def text_as_audio(d: Path, name: str = "notes.mp3") -> Path:
    p = d / name
    p.write_text("this is not audio\n" * 200)
    return p


def wav_nonfinite(d: Path, kind: str = "nan") -> Path:
    """A float32 WAV with NaN (or Inf) samples in the middle of real signal."""
    import soundfile as sf
    x = tone(2.0)
    x[1000:1100] = np.nan if kind == "nan" else np.inf
    p = d / f"{kind}.wav"
    sf.write(str(p), x, SR, subtype="FLOAT")
    return p


def wav_one_sample(d: Path) -> Path:
    import soundfile as sf
    p = d / "one_sample.wav"
    sf.write(str(p), np.array([0.5], np.float32), SR, subtype="PCM_16")
    return p


def wav_ten_hours(d: Path, hours: float = 10.0, sr: int = SR) -> Path:
    """A valid 16-bit mono WAV of `hours` hours, created sparse: the header and size are real,
    the data is holes (zeros) that take no disk. Decoding it would cost ~2.3 GB of float32."""
    n_bytes = int(hours * 3600 * sr) * 2
    header = b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVE" + b"fmt " + \
        struct.pack("<IHHIIHH", 16, 1, 1, sr, sr * 2, 2, 16) + b"data" + struct.pack("<I", n_bytes)
    p = d / "ten_hours.wav"
    with open(p, "wb") as f:
        f.write(header)
        # a little real signal at the start, so the file is not "silent" if it were decoded
        f.write((tone(1.0, sr) * 32767).astype("<i2").tobytes())
        f.truncate(len(header) + n_bytes)
    return p


def hostile_audio_set(d: Path) -> dict[str, Path]:
    """track_id -> file for every hostile audio case (plus two good files)."""
    d.mkdir(parents=True, exist_ok=True)
    return {
        "good_a": wav_ok(d / "good_a.wav", 2.0, seed=1),
        "good_b": wav_ok(d / "good_b.wav", 2.0, sr=44100, seed=2),
        "truncated": wav_truncated(d),
        "zero": zero_bytes(d),
        "random_mp3": random_bytes(d, "random.mp3"),
        "random_wav": random_bytes(d, "random.wav", seed=1),
        "text_mp3": text_as_audio(d),
        "nan": wav_nonfinite(d, "nan"),
        "inf": wav_nonfinite(d, "inf"),
        "one_sample": wav_one_sample(d),
        "ten_hours": wav_ten_hours(d),
    }


def manifest(path: Path, root: Path, rows: list[tuple[str, str]], config: dict | None = None) -> Path:
    """A manifest.parquet with (track_id, path) rows; paths as given (relative to `root` or not)."""
    import pyarrow as pa

    from tagfold.pipeline.io import write_parquet
    from tagfold.pipeline.audio.manifest import SCHEMA
    n = len(rows)
    table = pa.table({"track_id": [r[0] for r in rows], "path": [r[1] for r in rows],
                      "duration": [float("nan")] * n, "sample_rate": [0] * n, "channels": [0] * n,
                      "artist": [None] * n, "split": ["train"] * n}, schema=SCHEMA)
    write_parquet(table, path, {"source": "hostile", "root": str(root), **(config or {})})
    return path


# ----------------------------------------------------------------------------- names and file kinds

# Track ids that would name files outside an output folder, or that a file system or shell reads
# specially; `tagfold manifest` must refuse every one (prep-audio rejects them as bad_track_id).
HOSTILE_TRACK_IDS = ["/abs/path/escape", "../../../somewhere", "sub/dir", "new\nline", ".hidden", "-opt", "",
                     "x" * 129, "spa ce", "tab\t", "semi;colon", "caf\u00e9", "a\\b", "..", "."]


def symlink_loop(d: Path, name: str = "loop.wav") -> Path:
    """`name` -> `name`.b -> `name`: resolving either raises ELOOP (Python: RuntimeError)."""
    a, b = d / name, d / f"{name}.b"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def dangling_link(d: Path, name: str = "dangling.mp3") -> Path:
    p = d / name
    p.symlink_to(d / f"{name}.missing")
    return p


def fifo(d: Path, name: str = "fifo.wav") -> Path:
    """A named pipe named like audio: opening it for reading blocks until a writer comes."""
    import os
    p = d / name
    os.mkfifo(p)
    return p


def long_wav(path: Path, seconds: int, sr: int = 48000, channels: int = 2) -> Path:
    """A real `seconds`-long 16-bit WAV (one second of tones repeated), written in one pass: 20
    minutes of 48 kHz stereo is 230 MB on disk, 460 MB as float32 frames once decoded."""
    import soundfile as sf
    one = np.stack([tone(1.0, sr, 440 + 220 * c, seed=c) for c in range(channels)], 1)
    with sf.SoundFile(str(path), "w", sr, channels, "PCM_16") as f:
        f.buffer_write((one * 32767).astype("<i2").tobytes() * seconds, dtype="int16")
    return path
