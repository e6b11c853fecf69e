"""Output files: written atomically, Parquet with an explicit schema and the resolved config.

Every stage writes through these helpers so a killed run never leaves a half file that a
later run would trust: data goes to a temporary name in the same directory and is renamed
into place only once it is complete (rename is atomic on one filesystem).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

CONFIG_KEY = b"tagfold.config"


def config_dict(config: Any) -> dict:
    """A JSON-able dict from a (frozen) dataclass config or a plain dict."""
    if config is None:
        return {}
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.loads(json.dumps(config, default=str))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name lets output_lock tell a dead run's leftover from a live write
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"-{os.getpid()}.tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates 0600; outputs get the usual permissions (umask applied) like any new file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(table: pa.Table, path: str | os.PathLike, config: Any = None) -> Path:
    """Write `table` atomically to `path`, with the resolved config in the schema metadata."""
    metadata = dict(table.schema.metadata or {})
    metadata[CONFIG_KEY] = json.dumps(config_dict(config), sort_keys=True).encode()
    table = table.replace_schema_metadata(metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_config(path: str | os.PathLike) -> dict:
    """The config a Parquet file was written with ({} if none)."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(CONFIG_KEY)
    return json.loads(raw) if raw else {}


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a small text output (Markdown, CSV, JSON) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


_TEMP_RE = re.compile(r"^\..+-(\d+)\.tmp$")


def remove_dead_temps(folder: str | os.PathLike) -> int:
    """Delete atomic_path temp files in `folder` whose writing process no longer exists.

    A SIGKILLed run cannot clean up after itself; nothing ever reads these files, but they
    would pile up. Files of live writers (other array jobs sharing the folder) are left alone.
    """
    removed = 0
    for entry in os.scandir(folder):
        m = _TEMP_RE.match(entry.name)
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
        except (PermissionError, OverflowError, ValueError):
            pass   # alive under another user, or not a pid we can judge: keep it
    return removed


class OutputLocked(RuntimeError):
    """Another tagfold run holds the output directory."""


@contextlib.contextmanager
def output_lock(out_dir: str | os.PathLike, name: str = ".tagfold.lock") -> Iterator[Path]:
    """Hold an exclusive lock on `out_dir` for the length of a run.

    `name` lets independent jobs share one directory with one lock each (the array jobs of
    `prep-audio --shard K/N` each write only their own files).

    Two runs writing the same directory would interleave their files; the second one refuses
    instead. flock is released by the kernel when the process dies (even on SIGKILL), so a
    killed run never leaves a stale lock behind.
    """
    import fcntl

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock_path = out_dir / name
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise OutputLocked(
                f"{out_dir} is in use by another tagfold run (pid {holder}); "
                "wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        remove_dead_temps(out_dir)
        yield out_dir
    finally:
        os.close(fd)


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this (child) process as soon as `parent_pid` dies, however it dies (Linux's
    PR_SET_PDEATHSIG; a no-op elsewhere), so a killed run leaves no worker writing on."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
