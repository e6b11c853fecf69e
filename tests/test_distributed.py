"""torch.distributed: two CPU processes with the gloo backend, started the way torchrun starts
them (RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in the environment)."""
import dataclasses
import os
import socket
import sys
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from test_train import SynthLoaders, tiny_config  # noqa: E402

from tagfold.training import checkpoint as ckpt  # noqa: E402
from tagfold.training.train import fit  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg, result_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist
    try:
        loaders = SynthLoaders(cfg.labels, batch_size=cfg.batch_size)
        result = fit(cfg, loaders, quiet=True)
        torch.save(result.model.state_dict(), Path(result_dir) / f"rank{rank}.pt")
        (Path(result_dir) / f"rank{rank}.batches").write_text(str(loaders.train_batches))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_two_process_gloo_training(tmp_path):
    cfg = tiny_config(tmp_path, out=str(tmp_path / "ddp"), epochs=1, batch_size=4)
    # fork, not spawn: children reuse the imported torch instead of paying ~5 s each to import it.
    mp.start_processes(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")

    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # Each rank trained on different batches; only the gradient all-reduce keeps them equal.
    # (BatchNorm running statistics are buffers: DDP broadcasts rank 0's at each forward.)
    for k in r0:
        assert torch.allclose(r0[k].float(), r1[k].float(), atol=1e-6), k
    # Rank 0 alone writes checkpoints and history; they hold the shared weights.
    state = ckpt.load(ckpt.epoch_path(cfg.out, 1))
    assert state["config"]["batch_size"] == 4 and len(state["history"]) == 1
    w = next(k for k in r0 if k.endswith("weight"))
    assert torch.equal(state["model"][w], r0[w])

    # The same run on one process differs: proof that rank 1's batches changed the weights.
    one = SynthLoaders(cfg.labels, batch_size=cfg.batch_size)
    single = fit(dataclasses.replace(cfg, out=str(tmp_path / "single")), one, quiet=True)
    assert not torch.equal(single.model.state_dict()[w], r0[w])

    # Sharded at the loader: each rank's loader yielded only its half of the epoch's batches.
    n_train = int((one.splits == "train").sum())
    assert one.train_batches == -(-n_train // cfg.batch_size) >= 2
    for rank in (0, 1):
        assert int((tmp_path / f"rank{rank}.batches").read_text()) == one.train_batches // 2
