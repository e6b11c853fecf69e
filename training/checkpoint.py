"""Checkpoints: one file each, atomic, checksummed, and loaded without executing pickles.

File layout: a header line `TAGFOLDCKPT1 <sha256 hex of the payload>\\n`, then the payload
written by `torch.save`. A killed write never replaces a good file (temp + rename); a file cut
short or altered later fails the checksum; and loading goes through
`torch.load(weights_only=True)`, which refuses any pickle that would build arbitrary objects
(a malicious checkpoint raises CheckpointError instead of running code). Payloads therefore
hold only tensors, dicts, lists, tuples, strings and numbers.

In a run folder, `epoch-NNNN.pt` is written after every epoch (the last `keep` are kept) and
`best.pt` holds the best epoch by validation macro PR-AUC. `load_latest` walks back from the
newest epoch file to the newest one that verifies, warning about each bad one.
"""
from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from tagfold.pipeline.io import atomic_path
from tagfold.pipeline.constants import ROMAN
from tagfold.pipeline.errors import UserError

MAGIC = b"TAGFOLDCKPT1"
_EPOCH_RE = re.compile(r"^epoch-(\d{4,})\.pt$")


class CheckpointError(UserError):
    """A checkpoint file is truncated, corrupt, not a tagfold checkpoint, or unsafe."""


def save(state: dict[str, Any], path: str | Path) -> Path:
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(MAGIC + b" " + digest + b"\n")
            f.write(payload)
    return Path(path)


def describe(state: dict[str, Any]) -> str:
    """What a checkpoint holds, in the words of the error messages below."""
    cfg = state.get("config") or {}
    return (f"model {cfg.get('model')!r} width {cfg.get('width')} trained on {len(state.get('tags') or ())} tags "
            f"(Stage {ROMAN.get(cfg.get('stage'), cfg.get('stage'))})")


def load_weights(model, state: dict[str, Any], path: str | Path, expected: str) -> None:
    """Load `state`'s weights into `model`. A checkpoint without them, or made for another model,
    width or tag list, is one CheckpointError saying what it holds and what was `expected`."""
    missing = [k for k in ("model", "config", "tags") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: holds {', '.join(sorted(map(str, state))) or 'nothing'} but no "
                              f"{', '.join(missing)}; expected a checkpoint written by `tagfold train`")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:   # size mismatch, missing or unexpected keys
        first = str(e).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{path}: holds {describe(state)}, expected {expected} ({first})") from None


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({e})") from e
    header, sep, payload = data.partition(b"\n")
    parts = header.split(b" ")
    if not sep or len(parts) != 2 or parts[0] != MAGIC or len(parts[1]) != 64:
        raise CheckpointError(f"{path}: not a tagfold checkpoint (expected header '{MAGIC.decode()} <sha256>')")
    if hashlib.sha256(payload).hexdigest().encode() != parts[1]:
        raise CheckpointError(f"{path}: checksum mismatch ({len(payload)} payload bytes): "
                              "the file is truncated or corrupt")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError for unsafe globals, RuntimeError for bad zip
        # torch's message opens with advice to retry with weights_only=False, which on a hostile
        # file runs its code: keep only the line that says what was refused.
        lines = [s.strip() for s in str(e).splitlines() if s.strip() and "weights_only" not in s]
        why = next((s for s in lines if "GLOBAL" in s), lines[0] if lines else "")
        raise CheckpointError(f"{path}: refused to load: {type(e).__name__}: {why} (a tagfold checkpoint "
                              "holds only tensors and plain data; do not load this file by other means)") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: payload is a {type(state).__name__}, expected a dict")
    return state


def epoch_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / f"epoch-{epoch:04d}.pt"


def epoch_files(run_dir: str | Path) -> list[Path]:
    """Epoch checkpoints in a run folder, newest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _EPOCH_RE.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def load_latest(run_dir: str | Path, run_id: str | None = None) -> tuple[dict[str, Any], Path] | None:
    """The newest epoch checkpoint that verifies and, when `run_id` is given, belongs to that run;
    None if the folder has none at all.

    Each bad file is reported with a warning and skipped; if every file is bad this raises,
    because silently starting from scratch would throw away a run the user asked to resume.
    A checkpoint of another run (left by an earlier run in the same folder) is never resumed from.
    """
    files = epoch_files(run_dir)
    errors = []
    for path in files:
        try:
            state = load(path)
        except CheckpointError as e:
            errors.append(str(e))
            warnings.warn(f"{e}; falling back to the previous checkpoint", stacklevel=2)
            continue
        if run_id is not None and state.get("run_id") != run_id:
            errors.append(f"{path}: from run {state.get('run_id')}, not this folder's run {run_id}")
            warnings.warn(f"{errors[-1]}; skipped", stacklevel=2)
            continue
        return state, path
    if errors:
        raise CheckpointError(f"{run_dir}: no usable checkpoint among {len(files)}:\n  " + "\n  ".join(errors))
    return None


# what `tagfold train` writes into a run folder
RUN_OUTPUTS = ("epoch-*.pt", "best.pt", "history.csv", "history.parquet", "curves.png", "config.json")


def start_fresh(run_dir: str | Path, overwrite: bool) -> str:
    """Claim a run folder for a fresh run; returns its new run id. A folder holding an earlier run's
    outputs is refused unless `overwrite`, which deletes them (a fresh run beside old epoch files
    would leave them for a later --resume to pick up)."""
    from tagfold.pipeline.io import start_run
    run_dir = Path(run_dir)
    epochs = epoch_files(run_dir)
    # what a trained epoch leaves (config.json and plots alone are no run worth keeping)
    others = sorted(p.name for pattern in ("best.pt", "history.csv", "history.parquet") for p in run_dir.glob(pattern))
    if (epochs or others) and not overwrite:
        shown = ", ".join(([f"{len(epochs)} epoch files up to {epochs[0].name}"] if epochs else []) + others)
        raise UserError(f"{run_dir} holds an earlier run ({shown}): pass --resume to continue it, "
                        "--overwrite to delete it and start again, or choose another --out")
    return start_run(run_dir, clear=RUN_OUTPUTS)


def prune(run_dir: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` epoch files (keep >= 2 so one good fallback remains)."""
    for path in epoch_files(run_dir)[max(keep, 2):]:
        path.unlink(missing_ok=True)
