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

from tagfold.pipeline.errors import EXIT_LOCKED, UserError

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


def write_parquet(table: pa.Table | pa.RecordBatchReader, path: str | os.PathLike, config: Any = None,
                  run_id: str | None = None) -> Path:
    """Write `table` atomically to `path`, with the resolved config in the schema metadata and the
    id of the run that wrote it (`run_id`, default: the run that holds the folder, see start_run).
    A RecordBatchReader is written batch by batch (a row group each, up to Parquet's default
    size), so the whole table never has to be in memory."""
    metadata = dict(table.schema.metadata or {})
    metadata[CONFIG_KEY] = json.dumps(config_dict(config), sort_keys=True).encode()
    run_id = run_id or folder_run_id(Path(path).parent)
    if run_id:
        metadata[RUN_KEY] = run_id.encode()
    with atomic_path(path) as tmp:
        if isinstance(table, pa.RecordBatchReader):
            with pq.ParquetWriter(tmp, table.schema.with_metadata(metadata)) as writer:
                for batch in table:
                    writer.write_batch(batch)
        else:
            pq.write_table(table.replace_schema_metadata(metadata), tmp)
    return Path(path)


def read_input_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """A Parquet input the user named: a missing, foreign or incomplete file is one UserError
    naming the file (a missing one says so; the OS error of an unreadable one names it)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a Parquet file")
    if not path.exists():
        raise UserError(f"{path}: no such file")
    try:
        schema = pq.read_schema(path)
    except pa.ArrowInvalid as e:
        raise UserError(f"{path}: not a Parquet file ({str(e).splitlines()[0]})") from None
    missing = [c for c in columns or [] if c not in schema.names]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}; has {', '.join(schema.names)}")
    return pq.read_table(path, columns=columns)


# ----------------------------------------------------------------------------- run ids
# Every output carries the id of the run that wrote it (Parquet: the RUN_KEY metadata; checkpoints:
# a `run_id` field). A run claims its folder first by replacing the folder's RUN_FILE (atomic), which
# at once makes every earlier output there stale: a re-run killed midway can leave old files beside
# new ones, but never a mix that a reader accepts. Readers take their inputs through check_same_run.
RUN_KEY = b"tagfold.run_id"
RUN_FILE = ".tagfold-run"


class MixedRuns(UserError):
    """Inputs that must come from one run come from several, or from a run that did not finish."""


def new_run_id() -> str:
    import secrets
    import time
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def folder_run_id(folder: str | os.PathLike) -> str | None:
    """The run that holds `folder` (None if no run ever claimed it)."""
    try:
        return (Path(folder) / RUN_FILE).read_text(encoding="utf-8").strip() or None
    except (FileNotFoundError, NotADirectoryError):
        return None


def start_run(folder: str | os.PathLike, run_id: str | None = None, clear: tuple[str, ...] = ()) -> str:
    """Claim `folder` for a run (a new id unless `run_id` continues one): the run file is replaced
    atomically first, so every earlier output there is stale from that instant; then the earlier
    outputs matching the glob patterns in `clear` are deleted. Call it holding output_lock."""
    folder = Path(folder)
    run_id = run_id or new_run_id()
    write_text(run_id + "\n", folder / RUN_FILE)
    for pattern in clear:
        for p in folder.glob(pattern):
            if p.is_file() and not p.is_symlink():
                p.unlink(missing_ok=True)
    return run_id


def continue_run(folder: str | os.PathLike, inputs) -> str | None:
    """For a step computed from earlier outputs (a stage command): its outputs in `folder` belong to
    the run of its `inputs` (checked to be one run). Claims `folder` for that run when it holds
    another, so the step's outputs there are never stamped with, or mixed with, an unrelated run."""
    run_id = check_same_run(inputs)
    if run_id and folder_run_id(folder) != run_id:
        start_run(folder, run_id)
    return run_id


def read_run_id(path: str | os.PathLike) -> str | None:
    """The run id a Parquet output was written by (None for files from before run ids, and for
    inputs that are not Parquet, such as a tag list: their readers report what is wrong with them)."""
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (pa.ArrowInvalid, OSError):
        return None
    raw = metadata.get(RUN_KEY)
    return raw.decode() if raw else None


def check_same_run(paths) -> str | None:
    """The one run id of these Parquet outputs; MixedRuns naming the files if they come from
    different runs, or if one is stale (its folder now belongs to a later run that did not finish).
    Files without a run id (made by hand, or before run ids) are not judged."""
    ids = {}
    for p in map(Path, paths):
        if not p.is_file():
            continue   # the reader names a missing input itself
        rid, current = read_run_id(p), folder_run_id(p.parent)
        if rid and current and rid != current:
            raise MixedRuns(f"{p} is from run {rid}, but {p.parent} now belongs to run {current}: it is left "
                            "from an earlier run (or copied in) and would mix two runs; re-run that step")
        ids[p] = rid
    distinct = sorted({r for r in ids.values() if r})
    if len(distinct) > 1:
        raise MixedRuns("inputs come from different runs: " + ", ".join(f"{p} (run {r})" for p, r in ids.items() if r)
                        + "; give outputs of one run")
    return distinct[0] if distinct else None


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


class OutputLocked(UserError):
    """Another tagfold run holds the output directory."""

    exit_code = EXIT_LOCKED


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


def worker_pool(workers: int, start_method: str = "spawn"):
    """The one way tagfold starts a pool of worker processes, with one safety rule: the workers
    die with this process (die_with_parent), so a killed run leaves none writing beside a re-run.
    spawn (a fresh interpreter: no inherited locks, threads or decoder state) unless the caller
    needs its memory shared copy-on-write with the workers ("fork")."""
    import multiprocessing as mp

    return mp.get_context(start_method).Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),))


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
