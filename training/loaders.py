"""Two loaders, one batch contract.

Iterating any loader yields `(x, y, idx)`:
- x float32 [B, samples] for input='wave', or [B, n_mels, frames] log-mel dB for input='mel'
  (training/features.py MelConfig: 16 kHz, n_fft 512, hop 256, 128 mels; 59,049 samples -> 231 frames)
- y float32 [B, n_tags]; idx int64 [B]: row indices into `labels` (the labels table / array).
Train: uniform random crops in a shuffled order, drawn from (seed, epoch): `loader.set_epoch(e)`
before iterating makes epoch e reproducible (same order and crops on a re-run or a resume); without it
each new iteration moves to the next epoch. Both backends visit tracks in the same order
(`epoch_plan`); crop positions come from NumPy (torch) or DALI's generator, so they differ between
backends while each is reproducible on its own.
Several processes (torchrun): `rank=, world=` give each its own share of the training batches
(`shard_plan`), so no process reads batches it does not train on.
Eval (train=False): the centre crop of every track, in labels order; for 16-chunk averaging use
`eval_chunks`. Tracks shorter than the crop are zero-padded at the end.

Backends: 'torch' reads the prep memmap shards (index.parquet + shard-*.npy) with worker processes
and pinned memory; 'dali' reads the prep FLAC files (flac/<track_id>.flac) with an NVIDIA DALI
pipeline, CPU-only when device is cpu (device_id=None), features on the GPU when device is cuda.
Each iteration is one epoch (DALI builds one pipeline per epoch, so an abandoned epoch never leaks
into the next).
Labels: a pa.Table (track_id, split, one uint8 column per tag) aligned by track_id, or an
np.ndarray aligned with index.parquet rows (then split must be None).
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tagfold.pipeline.constants import CROP_SAMPLES
from tagfold.pipeline.labels_schema import tag_columns
from tagfold.training.features import LogMel, MelConfig
from tagfold.pipeline.errors import UserError


def split_rows(prep_dir, labels, split):
    """(track ids, label matrix float32, label row idx) for the selected split, present in prep.
    `split` may join several with '+' ('train+valid': the final fit after choosing epochs on valid)."""
    index = pq.read_table(Path(prep_dir) / "index.parquet")
    prepped = index.column("track_id").to_pylist()
    if isinstance(labels, np.ndarray):
        if split is not None:
            raise ValueError("split needs a labels table with a split column; an array covers all rows")
        if len(labels) != len(prepped):
            raise ValueError(f"labels array has {len(labels)} rows, {prep_dir}/index.parquet {len(prepped)}")
        return prepped, labels.astype(np.float32), np.arange(len(prepped), dtype=np.int64)
    tags = tag_columns(labels)
    tids = labels.column("track_id").to_pylist()
    keep = np.ones(len(tids), bool)
    if split is not None:
        wanted = set(split.split("+"))
        keep &= np.array([s in wanted for s in labels.column("split").to_pylist()])
    have = set(prepped)
    present = np.array([t in have for t in tids])
    missing = int((keep & ~present).sum())
    if missing:  # rejected by prep (see rejects.parquet): say so, never drop silently
        print(f"loader: {missing} {split or 'all'} tracks have no prepped audio in {prep_dir}; skipped",
              file=sys.stderr)
    rows = np.flatnonzero(keep & present).astype(np.int64)
    y = np.stack([labels.column(t).to_numpy(zero_copy_only=False) for t in tags], 1).astype(np.float32)
    return [tids[i] for i in rows], y[rows], rows


class ShardStore:
    """Random access to prepped waveforms in memmap shards."""

    def __init__(self, prep_dir):
        self.dir = Path(prep_dir)
        t = pq.read_table(self.dir / "index.parquet")
        self.pos = {tid: (s, o, n) for tid, s, o, n in zip(
            t.column("track_id").to_pylist(), t.column("shard").to_pylist(),
            t.column("offset").to_pylist(), t.column("length").to_pylist())}
        self._shards = {}

    def length(self, tid) -> int:
        return self.pos[tid][2]

    def read(self, tid, start, n) -> np.ndarray:
        """Samples [start, start+n) as float32, zero-padded past the end. Reads the memmap shard,
        or the track's FLAC when prep ran with --format flac (no shards)."""
        s, o, length = self.pos[tid]
        out = np.zeros(n, np.float32)
        take = max(0, min(n, length - start))
        if take == 0:
            return out
        if s not in self._shards:  # opened lazily so each worker process maps its own
            path = self.dir / f"shard-{s:05d}.npy"
            # allow_pickle stays False: a shard replaced by an object array must not run code
            try:
                self._shards[s] = np.load(path, mmap_mode="r") if path.exists() else None
            except ValueError as e:
                raise UserError(f"{path}: not a numeric prep shard (object/pickled arrays are refused, "
                                 f"never unpickled): {e}") from None
            if self._shards[s] is not None and self._shards[s].dtype.kind != "f":
                raise UserError(f"{path}: prep shards hold float16/float32 samples, found {self._shards[s].dtype}")
        shard = self._shards[s]
        if shard is None:
            import soundfile as sf
            flac = self.dir / "flac" / f"{tid}.flac"
            if not flac.exists():
                raise FileNotFoundError(f"track {tid}: neither {self.dir}/shard-{s:05d}.npy nor {flac} exists")
            out[:take] = sf.read(str(flac), start=start, frames=take, dtype="float32")[0][:take]
        else:
            out[:take] = shard[o + start:o + start + take]
        return out


def crop_start(length: int, crop: int, u: float | None) -> int:
    """Centre crop when u is None, else floor(u * (length - crop)); 0 for short tracks."""
    span = max(0, length - crop)
    return span // 2 if u is None else int(u * span)


def eval_chunks(prep_dir, track_id, n_chunks=16, crop_samples=CROP_SAMPLES, store=None) -> np.ndarray:
    """[n_chunks, crop] float32 evenly spaced over a prepped track (training/inference.py)."""
    from tagfold.training.inference import chunk_starts   # where chunks lie: defined once, there
    store = store or ShardStore(prep_dir)
    starts = chunk_starts(store.length(track_id), n_chunks, crop_samples)
    return np.stack([store.read(track_id, int(s), crop_samples) for s in starts])


class _CropDataset:
    def __init__(self, prep_dir, tids, y, rows, crop):
        self.prep_dir, self.tids, self.y, self.rows, self.crop = prep_dir, tids, y, rows, crop
        self.store = None

    def __len__(self):
        return len(self.tids)

    def __getitem__(self, key):
        i, u = key
        if self.store is None:
            self.store = ShardStore(self.prep_dir)
        tid = self.tids[i]
        x = self.store.read(tid, crop_start(self.store.length(tid), self.crop, u), self.crop)
        return x, self.y[i], self.rows[i]


def epoch_plan(n: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, crop fractions in [0, 1)) of one training epoch: a pure function of (seed, epoch)."""
    rng = np.random.default_rng((seed, epoch))
    return rng.permutation(n), rng.random(n)


def shard_plan(order, us, batch_size: int, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
    """The part of an epoch plan that process `rank` of `world` trains on: global batches rank,
    rank + world, rank + 2*world, ... of `order` cut into batches of `batch_size`.
    Only whole groups of `world` full batches are kept, so every rank runs the same number of steps
    (and gradient all-reduces); world=1 keeps the full batches, as drop_last does."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    groups = len(order) // (batch_size * world)

    def take(a):
        return np.asarray(a)[:groups * world * batch_size].reshape(groups, world, batch_size)[:, rank].reshape(-1)
    return take(order), take(us)


class _KeySampler:
    """Yields (position, crop fraction); the plan of `epoch` (then moves to the next epoch), this
    rank's share of it. Keys are drawn in the main process, so crops do not depend on num_workers."""

    def __init__(self, n, train, seed, batch_size, rank, world):
        self.n, self.train, self.seed, self.epoch = n, train, seed, 0
        self.batch_size, self.rank, self.world = batch_size, rank, world

    def __len__(self):
        if not self.train:
            return self.n
        return self.n // (self.batch_size * self.world) * self.batch_size

    def __iter__(self):
        if not self.train:
            yield from ((i, None) for i in range(self.n))
            return
        order, us = shard_plan(*epoch_plan(self.n, self.seed, self.epoch), self.batch_size, self.rank, self.world)
        self.epoch += 1
        yield from zip(order.tolist(), us.tolist())


def _die_with(parent_pid: int, worker_id: int) -> None:
    from tagfold.pipeline.io import die_with_parent
    die_with_parent(parent_pid)


def _collate(batch):
    import torch
    x, y, r = zip(*batch)
    return torch.from_numpy(np.stack(x)), torch.from_numpy(np.stack(y)), torch.tensor(r, dtype=torch.int64)


class TorchLoader:
    def __init__(self, prep_dir, labels, split, *, input, batch_size, crop_samples, train, device,
                 num_workers, seed, mel=MelConfig(), rank=0, world=1, augment=None):
        import torch
        tids, y, rows = split_rows(prep_dir, labels, split)
        self.device = torch.device(device)
        self.sampler = _KeySampler(len(tids), train, seed, batch_size, rank, world)
        self.loader = torch.utils.data.DataLoader(
            _CropDataset(prep_dir, tids, y, rows, crop_samples), batch_size=batch_size, sampler=self.sampler,
            num_workers=num_workers, collate_fn=_collate, drop_last=train,
            pin_memory=self.device.type == "cuda", persistent_workers=num_workers > 0,
            # workers die with the training process, however it dies (SIGKILL included), as
            # prep-audio's do: none lingers reading shards beside a re-run
            worker_init_fn=functools.partial(_die_with, os.getpid()) if num_workers > 0 else None)
        self.mel = LogMel(mel).to(self.device) if input == "mel" else None
        self.augment = augment if augment is not None and augment.active and train else None

    def set_epoch(self, epoch: int) -> None:
        self.sampler.epoch = int(epoch)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        import torch
        # augmentation draws from (seed, epoch, rank), read before the sampler moves to the next epoch
        rng = (np.random.default_rng((self.sampler.seed, self.sampler.epoch, 7, self.sampler.rank))
               if self.augment else None)
        for x, y, idx in self.loader:
            # non_blocking: the copy from pinned memory overlaps the previous step's GPU work
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.augment is not None:     # on the waveform, before any log-mel
                x, y = self.augment.apply(x, y, rng)
            if self.mel is not None:
                with torch.no_grad():
                    x = self.mel(x)
            yield x, y, idx


class DaliLoader:
    """DALI: readers.file (FLAC) -> decoders.audio (16 kHz mono) -> slice (random or centre crop,
    zero pad) -> [spectrogram -> mel_filter_bank -> to_decibels] -> DALIGenericIterator.

    One pipeline per epoch: the file order is `epoch_plan`'s permutation (a full shuffle, unlike the
    reader's bounded shuffle buffer) and crops come from DALI's generator seeded by (seed, epoch)."""

    def __init__(self, prep_dir, labels, split, *, input, batch_size, crop_samples, train, device,
                 num_workers, seed, mel=MelConfig(), rank=0, world=1):
        import torch
        tids, y, rows = split_rows(prep_dir, labels, split)
        self.files = [str(Path(prep_dir) / "flac" / f"{t}.flac") for t in tids]
        absent = [f for f in self.files if not Path(f).exists()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} FLAC files missing (run prep-audio --format flac|both), "
                                    f"first: {absent[0]}")
        self.y, self.rows, self.n = torch.from_numpy(y), torch.from_numpy(rows), len(tids)
        self.input, self.batch_size, self.crop, self.train = input, batch_size, crop_samples, train
        self.num_workers, self.seed, self.mel, self.epoch = num_workers, seed, mel, 0
        self.rank, self.world = rank, world
        self.device = torch.device(device)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _iterator(self, epoch: int):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
        if self.train:
            order = shard_plan(*epoch_plan(self.n, self.seed, epoch), self.batch_size, self.rank, self.world)[0]
            pipe_seed = int(np.random.default_rng((self.seed, epoch, 1)).integers(0, 2**31 - 1))
            # each rank its own crop stream (rank 0, and so world=1, keeps the single-process one)
            pipe_seed = (pipe_seed + self.rank) % (2**31 - 1)
        else:
            order, pipe_seed = np.arange(self.n), self.seed
        pipe = self._build([self.files[i] for i in order], order.tolist(), pipe_seed)
        pipe.build()
        return DALIGenericIterator(
            pipe, ["x", "pos"], reader_name="reader", auto_reset=False,
            last_batch_policy=LastBatchPolicy.DROP if self.train else LastBatchPolicy.PARTIAL)

    def _build(self, files, positions, seed):
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali import math as dmath
        mel, crop, train = self.mel, self.crop, self.train
        gpu = self.device.type == "cuda"
        # periodic Hann, as torch.hann_window (DALI's default window is symmetric)
        window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(mel.n_fft) / mel.n_fft)).astype(np.float32).tolist()

        @pipeline_def(batch_size=self.batch_size, num_threads=max(1, self.num_workers),
                      device_id=(self.device.index or 0) if gpu else None, seed=seed, exec_dynamic=True)
        def pipe():
            data, pos = fn.readers.file(files=files, labels=positions, random_shuffle=False, name="reader")
            audio, _ = fn.decoders.audio(data, sample_rate=mel.sample_rate, downmix=True, dtype=types.FLOAT)
            length = fn.cast(audio.shape(), dtype=types.FLOAT)[0]
            span = dmath.max(length - crop, 0.0)
            # centre crop in eval, as the torch loader; floor(u * span) in train
            frac = fn.random.uniform(range=[0.0, 1.0]) if train else 0.5
            start = fn.cast(dmath.floor(frac * span), dtype=types.INT32)
            x = fn.slice(audio, start, types.Constant(np.int32(crop)), axes=[0],
                         out_of_bounds_policy="pad", fill_values=0.0)
            if gpu:
                x = x.gpu()  # features on the GPU from here on
            if self.input == "mel":
                spec = fn.spectrogram(x, nfft=mel.n_fft, window_length=mel.n_fft, window_step=mel.hop_length,
                                      window_fn=window, center_windows=True, reflect_padding=True, power=2,
                                      layout="ft")
                spec = fn.mel_filter_bank(spec, sample_rate=mel.sample_rate, nfilter=mel.n_mels,
                                          freq_low=mel.f_min, freq_high=mel.f_max, normalize=False,
                                          mel_formula="htk")
                x = fn.to_decibels(spec, multiplier=10.0, reference=1.0, cutoff_db=10 * np.log10(mel.amin))
            return x, pos

        return pipe()

    def __len__(self):
        if self.train:
            return self.n // (self.batch_size * self.world)
        return -(-self.n // self.batch_size)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if len(self) == 0:  # DALI's reader cannot be built on an empty file list
            return
        for out in self._iterator(epoch):
            x = out[0]["x"].to(self.device, non_blocking=True)
            pos = out[0]["pos"].reshape(-1).long().cpu()
            yield x, self.y[pos].to(self.device, non_blocking=True), self.rows[pos]


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
        return True
    except ImportError:
        return False


def choose_backend(prep_dir, backend: str, device: str) -> str:
    """The loader `backend` names; for auto, see make_loader."""
    if backend != "auto":
        return backend
    prep = Path(prep_dir)
    has_flac, has_npy = (prep / "flac").is_dir(), any(prep.glob("shard-*.npy"))
    use_dali = dali_available() and has_flac and (str(device).startswith("cuda") or not has_npy)
    return "dali" if use_dali else "torch"


def make_loader(prep_dir, labels, split, *, input="wave", batch_size=16, crop_samples=CROP_SAMPLES, train=True,
                backend="torch", device="cpu", num_workers=0, seed=0, mel: MelConfig = MelConfig(),
                rank=0, world=1, augment=None):
    """See the module docstring for the batch contract. backend: torch | dali | auto = DALI when
    training on a GPU with FLAC files and DALI installed (or when the prep has FLAC files only),
    else torch: on a CPU the memmap crops are faster than decoding FLAC (benchmarks/bench_audio.py).
    rank, world: this process's share of the training batches (`shard_plan`); evaluation
    (train=False) is never sharded, so they must stay 0, 1 there. augment: a training.augment.Augment
    applied to training batches (torch backend only)."""
    if input not in ("wave", "mel"):
        raise ValueError(f"input must be 'wave' or 'mel', got {input!r}")
    if not train and (rank, world) != (0, 1):
        raise ValueError(f"rank/world shard training batches only; train=False got rank={rank}, world={world}")
    cls = {"torch": TorchLoader, "dali": DaliLoader}.get(choose_backend(prep_dir, backend, device))
    if cls is None:
        raise ValueError(f"backend must be torch, dali or auto, got {backend!r}")
    if augment is not None and augment.active and train:
        if cls is DaliLoader:
            raise ValueError("waveform augmentation runs in the torch loader; use --backend torch")
        return cls(prep_dir, labels, split, input=input, batch_size=batch_size, crop_samples=crop_samples,
                   train=train, device=device, num_workers=num_workers, seed=seed, mel=mel, rank=rank,
                   world=world, augment=augment)
    return cls(prep_dir, labels, split, input=input, batch_size=batch_size, crop_samples=crop_samples,
               train=train, device=device, num_workers=num_workers, seed=seed, mel=mel, rank=rank, world=world)
