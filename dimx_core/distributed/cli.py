"""The command line's worker options (`--workers N`, `--ray-address ADDR`, and for videos `--cfg-parallel`,
`--ulysses U`) and the pool they name, for every command that can run on Ray workers. Commands of lower tiers
(`dimx train-director`) are handed a WorkerArguments by the top-level CLI instead of importing this module."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class WorkerArguments:
    what: str                  # what the workers do, for --help
    split_videos: bool = True  # also --cfg-parallel and --ulysses (several workers share one video)

    def add(self, parser: argparse.ArgumentParser) -> None:
        where = parser.add_argument_group("workers", f"Ray workers for {self.what} (default: this process)")
        where.add_argument("--workers", type=int, default=0,
                           help="N workers: GPUs of this machine (CPU workers where it has none) or of the cluster")
        where.add_argument("--ray-address", help="a running Ray cluster (auto, HOST:PORT or ray://HOST:PORT)")
        if self.split_videos:
            where.add_argument("--cfg-parallel", action="store_true",
                               help="two workers share each video's guided steps")
            where.add_argument("--ulysses", type=int, default=1, help="workers sharing each video's tokens (default 1)")

    def pool(self, args, say: Callable[[str], None]):
        """The pool the arguments name (distributed.executor.WorkerPool), or None without --workers."""
        from .executor import WorkersSpec, pool_for
        from .parallel import ParallelPlan

        if args.ray_address and not args.workers:
            raise ValueError("--ray-address needs --workers N: how many of the cluster's GPUs to use")
        if not args.workers:
            return None
        plan = ParallelPlan(cfg=2 if self.split_videos and args.cfg_parallel else 1,
                            ulysses=args.ulysses if self.split_videos else 1)
        spec = WorkersSpec(count=args.workers, address=args.ray_address or None,
                           cpu=not args.ray_address and not torch.cuda.is_available(), plan=plan)
        say(f"workers: {spec.describe()}")
        return pool_for(spec).with_messages(say)


VIDEOS = WorkerArguments("the independent videos")
TRAINING = WorkerArguments("the training run (each trains its share of every batch; the global batch is N x "
                           "--batch-size)", split_videos=False)
