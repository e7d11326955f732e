"""Processes: one, or several under `torchrun` (DistributedDataParallel: gloo on CPU, NCCL on CUDA),
and the shuffled batches of each process, the same on every rerun so a resumed epoch can skip ahead."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from ..engine.device import resolve_device


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs and writes."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, values: list[float], device: torch.device) -> list[float]:
        """Rank 0's values on every rank."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.broadcast(t, 0)
        return t.tolist()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of `values` over the processes (in place)."""
        if self.world > 1:
            dist.all_reduce(values)
            values /= self.world
        return values

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def setup_distributed(device_arg: str | None) -> tuple[Dist, torch.device]:
    """This process's place (WORLD_SIZE, LOCAL_RANK from torchrun) and device; joins the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_arg)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank() if world > 1 else 0, world, local), device


def epoch_batches(n_items: int, batch_size: int, epoch: int, seed: int, d: Dist) -> list[list[int]]:
    """This rank's shuffled batches for `epoch`: the same on every rerun, so a resume can skip ahead."""
    sampler = DistributedSampler(range(n_items), num_replicas=d.world, rank=d.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
