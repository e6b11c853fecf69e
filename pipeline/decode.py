"""Robust audio decoding: the one path from an audio file to float32 mono 16 kHz samples.

`prep-audio` decodes whole files (`decode_mono_16k`); inference (`evaluate` on raw files,
`predict`) decodes only the windows its evenly spaced chunks need (`read_windows`), so its memory
is bounded by the crops, not by the file. Both refuse the same inputs with the same reasons:
every refusal is `Rejected(reason)`, the reason starting with a short code:

    missing_file, dangling_link, symlink_loop, unreadable, not_regular_file (a FIFO, directory,
    device or socket: opening a FIFO would block forever), empty_file, decode_error, too_long
    (header longer than max_seconds, refused before decoding), no_audio, non_finite (NaN/Inf
    samples), silent (peak below SILENCE_PEAK)
"""
from __future__ import annotations

import errno
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from tagfold.pipeline.constants import SAMPLE_RATE

SILENCE_PEAK = 1e-4
BLOCK_FRAMES = 1 << 18       # decode in blocks: memory ~ one block, not channels x length
# source frames decoded beyond each window on both sides, so the resampler's filter sees the same
# neighbourhood as when resampling the whole file (soxr HQ settles within a few hundred frames)
WINDOW_MARGIN_FRAMES = 4096
# containers libsndfile seeks in exactly; the rest (MP3, Ogg Vorbis/Opus) are streamed. Vorbis seeks
# land up to a page off near the end of a file (libsndfile 1.2.2, found by the windowed-decode tests)
EXACT_SEEK_FORMATS = {"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF", "AU"}


class Rejected(Exception):
    """An input file that is refused; str(e) is the reason (code first, then details)."""


def check_regular_file(path: str | Path) -> os.stat_result:
    """stat() of a readable, non-empty regular file (symlinks followed), else Rejected."""
    path = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Rejected("dangling_link" if os.path.islink(path) else "missing_file") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Rejected("symlink_loop: too many levels of symbolic links") from None
        raise Rejected(f"unreadable: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode)
                else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "not a regular file")
        raise Rejected(f"not_regular_file: {kind}")
    if st.st_size == 0:
        raise Rejected("empty_file")
    if not os.access(path, os.R_OK):
        raise Rejected("unreadable: permission denied")
    return st


@dataclass(frozen=True)
class AudioInfo:
    frames: int          # as the header states (a cut MP3 overstates it)
    samplerate: int
    channels: int
    format: str          # soundfile's format name: WAV, FLAC, OGG, MP3, ...


def probe(path: str | Path, max_seconds: float | None = None) -> AudioInfo:
    """Header of a decodable file; Rejected for everything decode_mono_16k would refuse up front."""
    import soundfile as sf
    check_regular_file(path)
    try:
        info = sf.info(str(path))
    except Exception as e:  # libsndfile/mpg123 raise assorted errors on garbage
        raise Rejected(f"decode_error: {type(e).__name__}: {str(e)[:120]}") from None
    if max_seconds is not None and info.frames > max_seconds * info.samplerate:
        raise Rejected(f"too_long: {info.frames / info.samplerate:.0f} s > --max-seconds {max_seconds:g}")
    if info.samplerate <= 0 or info.channels <= 0:
        raise Rejected(f"decode_error: header says {info.samplerate} Hz, {info.channels} channels")
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels), str(info.format))


def resampled_length(frames: int, samplerate: int) -> int:
    """Length at 16 kHz of `frames` source frames, as soxr.resample returns it."""
    return round(frames * SAMPLE_RATE / samplerate)


def _resample(x: np.ndarray, samplerate: int) -> np.ndarray:
    import soxr
    if samplerate == SAMPLE_RATE:
        return x
    return soxr.resample(x, samplerate, SAMPLE_RATE, quality="HQ").astype(np.float32)


def _check_finite(x: np.ndarray) -> None:
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise Rejected(f"non_finite: {bad} non-finite (NaN/Inf) samples")


def _read_blocks(f, on_block) -> tuple[int, bool]:
    """Read `f` to the decoder's end, block by block, calling on_block(first_frame, mono block);
    returns (frames decoded, stopped by a decoder error). Not sf.blocks: it trusts the header's
    frame count, which a cut MP3 overstates, and hands back stale buffer contents past the end."""
    done = 0
    try:
        while True:
            b = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
            if len(b) == 0:
                return done, False
            on_block(done, b.mean(axis=1))
            done += len(b)
    except Exception:  # a decoder error midway: keep what decoded (none decoded: the caller rejects)
        if not done:
            raise
        return done, True


def decode_mono_16k(path: str | Path, max_seconds: float | None = None) -> tuple[np.ndarray, int, list[str]]:
    """(float32 mono 16 kHz waveform of the whole file, original rate, flags); raises Rejected.
    Flags: `truncated` (decoding stopped early or failed midway; what decoded is kept),
    `upsampled` (source rate below 16 kHz)."""
    import soundfile as sf
    info = probe(path, max_seconds)
    blocks, flags = [], []
    try:
        with sf.SoundFile(str(path)) as f:
            decoded, failed = _read_blocks(f, lambda _, b: blocks.append(b))
    except Exception as e:
        raise Rejected(f"decode_error: {type(e).__name__}: {str(e)[:120]}") from None
    if failed or (decoded and decoded < 0.99 * info.frames):
        flags.append("truncated")  # the header promised more than the data holds
    x = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    if x.size == 0:
        raise Rejected("no_audio")
    _check_finite(x)
    x = _resample(x, info.samplerate)
    if x.size == 0 or np.abs(x).max() < SILENCE_PEAK:
        raise Rejected("silent")
    if info.samplerate < SAMPLE_RATE:
        flags.append("upsampled")
    return x, info.samplerate, flags


def _source_window(start: int, crop: int, sr: int, frames: int) -> tuple[int, int, int]:
    """(first source frame, end source frame, offset at 16 kHz of `start` in the resampled window)
    for the 16 kHz samples [start, start + crop). The first frame is a multiple of sr/gcd(sr, 16k),
    so it falls exactly on a 16 kHz sample and the window's samples line up with the whole file's."""
    step = sr // math.gcd(sr, SAMPLE_RATE)
    first = max(0, start * sr // SAMPLE_RATE - WINDOW_MARGIN_FRAMES) // step * step
    end = min(frames, -(-(start + crop) * sr // SAMPLE_RATE) + WINDOW_MARGIN_FRAMES)
    return first, end, start - first * SAMPLE_RATE // sr


def read_windows(path: str | Path, plan: Callable[[int], list[int]], crop: int, *,
                 max_seconds: float | None = None) -> np.ndarray:
    """float32 [n, crop]: the 16 kHz mono samples [s, s + crop) for each start s in
    `plan(16 kHz length of the file)`, zero-padded past the end, decoding only those windows (plus
    a small margin each). WAV/FLAC/AIFF are read by seeking; MP3 and Ogg are streamed block by block,
    keeping only the windows. Peak memory: the windows (n x (crop x rate/16 kHz + 2 margins) x channels
    float32) plus one block, whatever the file's length. Same refusals as decode_mono_16k, checked
    on the samples read. When the file holds fewer frames than its header says (a cut file), the
    windows are planned again on the true length, so they never point past the real end."""
    import soundfile as sf
    info = probe(path, max_seconds)
    sr, frames = info.samplerate, info.frames
    for _ in range(2):
        starts = [int(s) for s in plan(resampled_length(frames, sr))]
        windows = [_source_window(s, crop, sr, frames) for s in starts]
        try:
            with sf.SoundFile(str(path)) as f:
                if f.seekable() and info.format in EXACT_SEEK_FORMATS:
                    pieces = []
                    for a, b, _ in windows:
                        f.seek(a)
                        pieces.append(f.read(b - a, dtype="float32", always_2d=True).mean(axis=1)
                                      if b > a else np.zeros(0, np.float32))
                    short = any(len(p) < b - a for p, (a, b, _) in zip(pieces, windows))
                    decoded = frames
                    if short:   # count the true length from the start (bounded memory: one block)
                        f.seek(0)
                        decoded = _read_blocks(f, lambda *_: None)[0]
                else:
                    parts: list[list[np.ndarray]] = [[] for _ in starts]

                    def keep(first: int, block: np.ndarray) -> None:
                        for i, (a, b, _) in enumerate(windows):
                            lo, hi = max(a, first), min(b, first + len(block))
                            if lo < hi:
                                parts[i].append(block[lo - first:hi - first])

                    decoded, _ = _read_blocks(f, keep)
                    pieces = [np.concatenate(p) if p else np.zeros(0, np.float32) for p in parts]
        except Exception as e:
            raise Rejected(f"decode_error: {type(e).__name__}: {str(e)[:120]}") from None
        if decoded == 0:
            raise Rejected("no_audio")
        if decoded >= frames:
            break
        frames = decoded   # the header overstated the length: plan again on the true one
    out = np.zeros((len(starts), crop), np.float32)
    for i, (piece, (a, b, offset)) in enumerate(zip(pieces, windows)):
        _check_finite(piece)
        x = _resample(piece, sr)[offset:offset + crop]
        out[i, :len(x)] = x
    if not out.size or np.abs(out).max() < SILENCE_PEAK:
        raise Rejected("silent")
    return out
