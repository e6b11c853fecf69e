"""Peak memory under load, measured as the peak RSS (VmHWM at exit) of a subprocess's main process.

    .venv/bin/python -m pytest benchmarks/bench_memory.py -s --benchmark-disable
    TAGFOLD_BENCH_DEMO_CLIPS=1000 ...   # the loader over the full default demo (CI uses 240 clips)

Ceilings (a run above one fails):
- `tagfold pipeline` over the full 522,366 tags (`tagfold synth-tags`, seed 0; its first 70,000
  under --benchmark-disable, as in CI): 2 GiB for the
  main process plus the side process that runs Stage I / III beside it (the sum counts the
  pages they share twice, so it bounds the run): measured ~0.55 + ~0.97 GiB on the 2-core box.
- the torch loader over the demo data (wave and mel, batch 16, 59,049-sample crops, no workers):
  1 GiB for the process (measured ~0.65 GiB at 240 clips, ~0.9 GiB at 1,000: the peak includes
  the memory-mapped shard pages, which are page cache and grow with the data touched), and no
  growth across epochs: resident memory after epoch 3 within 2 % + 2 MiB of epoch 1, measured
  after gc and malloc_trim so allocator caching does not hide or fake a leak. A run that keeps
  every batch (bench_growth_check_catches_a_leak) must fail that check.
Measured figures are printed and stored in the benchmark's extra_info.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

PIPELINE_CEILING_MIB = 2048
LOADER_CEILING_MIB = 1024
GROWTH_TOLERANCE = 0.02
GROWTH_SLACK_MIB = 2
FULL_SIZE = 522_366
CI_SIZE = 70_000
DEMO_CLIPS = int(os.environ.get("TAGFOLD_BENCH_DEMO_CLIPS", "240"))   # the demo's default is 1,000
ENV = {**os.environ, "PYTHONHASHSEED": "0"}


# Peak RSS is the process's VmHWM, read from /proc/self/status as it exits. Not ru_maxrss from
# wait4: Linux carries the parent's high-water mark across fork/vfork + exec, so a child of a
# pytest process holding 1.5 GB reports >= 1.5 GB whatever it does itself.
PEAK_TAG = "TAGFOLD_PEAK_RSS_KIB"
PEAK_AT_EXIT = f"""
import atexit, sys
def _peak():
    with open('/proc/self/status') as f:
        kib = next(line.split()[1] for line in f if line.startswith('VmHWM:'))
    print('{PEAK_TAG}', kib, file=sys.stderr, flush=True)
atexit.register(_peak)
"""
RUN_TAGFOLD = PEAK_AT_EXIT + """
import runpy
sys.argv = ['tagfold', *sys.argv[1:]]
runpy.run_module('tagfold.cli', run_name='__main__', alter_sys=True)
"""


def run_measured(args: list[str], timeout: float = 900) -> tuple[int, str, float, float]:
    """(return code, combined output, peak RSS MiB of the main process, wall seconds) for a Python
    command line `[sys.executable, "-c", code, ...]` whose code starts with PEAK_AT_EXIT."""
    t0 = time.monotonic()
    r = subprocess.run(args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    peaks = [line.split()[1] for line in r.stdout.splitlines() if line.startswith(PEAK_TAG)]
    assert peaks, f"no peak RSS reported:\n{r.stdout[-3000:]}"
    return r.returncode, r.stdout, int(peaks[-1]) / 1024, time.monotonic() - t0


def tagfold(*args: str) -> list[str]:
    return [sys.executable, "-c", RUN_TAGFOLD, *args]


@pytest.fixture(scope="module")
def full_tags(tmp_path_factory, pytestconfig) -> Path:
    """The 522,366-tag job; under --benchmark-disable (CI, one round on 2 cores) its first
    CI_SIZE tags, so the suite stays fast while the same checks run."""
    n = CI_SIZE if pytestconfig.getoption("benchmark_disable", default=False) else FULL_SIZE
    path = tmp_path_factory.mktemp("full") / f"tags_{n}.txt"
    rc, log, _, _ = run_measured(tagfold("synth-tags", "--n", str(n), "--seed", "0", "--out", str(path)))
    assert rc == 0, log[-3000:]
    return path


def bench_pipeline_peak_rss_full_size(benchmark, full_tags, tmp_path, check_pipeline_outputs):
    out = tmp_path / "out"
    result = {}

    def once():
        result["rc"], result["log"], result["peak"], result["wall"] = run_measured(
            tagfold("pipeline", "--input", str(full_tags), "--format", "lines", "--out", str(out), "--no-plots",
                    "--vectors", "glove", "--cut", "normal"))   # as bench_pipeline: GloVe, no encoder

    benchmark.pedantic(once, rounds=1, iterations=1)
    assert result["rc"] == 0, result["log"][-3000:]
    summary = json.loads((out / "summary.json").read_text())
    n_tags = len(full_tags.read_text("utf-8").splitlines())
    assert summary["ingest"]["read"] == n_tags
    # the measured run wrote the whole, consistent output (what is measured must be the real job)
    check_pipeline_outputs(out, full_tags.read_text("utf-8").splitlines())
    # Stage I / III run in a forked side process: the sum of both peaks bounds the run (it counts
    # pages they share twice).
    side = summary["peak_rss_mib"]["side_process"]
    assert side is not None, "the pipeline reported no side-process peak"
    peak = result["peak"] + side
    benchmark.extra_info.update(peak_rss_mib=round(peak), main_mib=round(result["peak"]), side_mib=round(side),
                                ceiling_mib=PIPELINE_CEILING_MIB, wall_s=round(result["wall"], 1))
    print(f"\npipeline over {n_tags:,} tags: peak RSS {peak:.0f} MiB = main {result['peak']:.0f} + side "
          f"process {side:.0f} (ceiling {PIPELINE_CEILING_MIB}), {result['wall']:.1f} s")
    assert peak < PIPELINE_CEILING_MIB


@pytest.fixture(scope="module")
def demo_prep(tmp_path_factory) -> tuple[Path, Path]:
    """A demo dataset (DEMO_CLIPS x 10 s), prepped, with latent-tag labels for the loader."""
    import pyarrow as pa

    from tagfold.pipeline.io import write_parquet
    root = tmp_path_factory.mktemp("demo")
    rc, log, _, _ = run_measured(tagfold("demo-data", "--out", str(root / "demo"), "--n", str(DEMO_CLIPS)))
    assert rc == 0, log[-3000:]
    rc, log, _, _ = run_measured(tagfold("prep-audio", "--manifest", str(root / "demo" / "manifest.parquet"),
                                         "--out", str(root / "prep"), "--workers", "2"))
    assert rc == 0, log[-3000:]
    # labels straight from the demo's latent tags (track_id + one uint8 column per selected tag):
    # the loader's input, without running the tag pipeline
    latent = pq.read_table(root / "demo" / "latent.parquet")
    split = dict(zip(*pq.read_table(root / "demo" / "manifest.parquet", columns=["track_id", "split"])
                     .to_pydict().values()))
    ids = latent.column("track_id").to_pylist()
    table = latent.add_column(1, "split", pa.array([split[t] for t in ids]))
    labels = root / "labels.parquet"
    write_parquet(table, labels, {"source": "demo latent"})
    return root / "prep", labels


LOADER_SCRIPT = PEAK_AT_EXIT + r"""
import json, resource, sys
import pyarrow.parquet as pq, torch
from tagfold.training.loaders import make_loader
torch.set_num_threads(1)
prep, labels, inp, workers = sys.argv[1], pq.read_table(sys.argv[2]), sys.argv[3], int(sys.argv[4])
leak = sys.argv[5:] == ["leak"]   # keeps every batch: proves the growth check can fail
kept = []

def rss_mib():
    # drop garbage and hand freed heap back to the OS first: what remains is live memory, so a
    # leak shows as growth while allocator caching between epochs does not
    import ctypes, gc
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

rows, after = 0, []
for epoch in range(3):
    loader = make_loader(prep, labels, "train", input=inp, batch_size=16, crop_samples=59049, train=True,
                         backend="torch", device="cpu", num_workers=workers, seed=epoch)
    for x, y, idx in loader:
        assert torch.isfinite(x).all() and x.shape[0] == y.shape[0] == len(idx)
        rows += len(idx)
        if leak:
            kept.append(x.clone())
    # the split of resident memory at the epoch's end, before the shard memmaps are dropped:
    # file-backed pages (the shards) are page cache the kernel can reclaim; anonymous ones are not
    with open("/proc/self/status") as f:
        split = {k: int(v.split()[0]) / 1024 for k, v in (l.split(":", 1) for l in f) if k in ("RssAnon", "RssFile")}
    del loader
    after.append(rss_mib())
print(json.dumps({"rows": rows, "rss_after_epoch_mib": after, "last_epoch_end_mib": split}))
"""


def grows(rss_after_epoch: list[float]) -> bool:
    return rss_after_epoch[-1] > rss_after_epoch[0] * (1 + GROWTH_TOLERANCE) + GROWTH_SLACK_MIB


def bench_growth_check_catches_a_leak(demo_prep):
    prep, labels = demo_prep
    rc, log, _, _ = run_measured([sys.executable, "-c", LOADER_SCRIPT, str(prep), str(labels), "wave", "0", "leak"])
    assert rc == 0, log[-3000:]
    stats = json.loads(next(line for line in log.splitlines() if line.startswith("{")))
    assert grows(stats["rss_after_epoch_mib"]), stats


@pytest.mark.parametrize("inp", ["wave", "mel"])
def bench_loader_epochs_memory(benchmark, demo_prep, inp):
    prep, labels = demo_prep
    result = {}

    def once():
        result["rc"], result["log"], result["peak"], result["wall"] = run_measured(
            [sys.executable, "-c", LOADER_SCRIPT, str(prep), str(labels), inp, "0"])

    benchmark.pedantic(once, rounds=1, iterations=1)
    assert result["rc"] == 0, result["log"][-3000:]
    stats = json.loads(next(line for line in result["log"].splitlines() if line.startswith("{")))
    n_train = sum(s == "train" for s in pq.read_table(labels).column("split").to_pylist())
    assert stats["rows"] == 3 * (n_train // 16) * 16          # every full batch of every epoch
    benchmark.extra_info.update(peak_rss_mib=round(result["peak"]), rss_after_epoch_mib=stats["rss_after_epoch_mib"],
                                last_epoch_end_mib=stats["last_epoch_end_mib"],
                                ceiling_mib=LOADER_CEILING_MIB)
    print(f"\nloader ({inp}, {n_train} train clips x 3 epochs): peak RSS {result['peak']:.0f} MiB "
          f"(ceiling {LOADER_CEILING_MIB}); RSS after epochs {[round(v) for v in stats['rss_after_epoch_mib']]} MiB; "
          f"at the last epoch's end anon {stats['last_epoch_end_mib']['RssAnon']:.0f} + "
          f"file-backed {stats['last_epoch_end_mib']['RssFile']:.0f} MiB")
    assert result["peak"] < LOADER_CEILING_MIB
    assert not grows(stats["rss_after_epoch_mib"]), stats
