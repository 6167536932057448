"""The Ray actor: one per GPU (or CPU worker), holding one model, taking one task at a time (tasks.KINDS).

Its task methods run one after another; `progress` and `cancel` belong to a second concurrency group, so the
driver can read progress and stop a running task while it runs (Ray cannot interrupt a running actor task).
Everything it receives and returns is plain data (wire.py): this module is imported in the worker under the name
`dimx_core`, whatever name the driver's host gave the library.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import threading

import ray
import torch
import torch.distributed as dist

from ..hooks import Hooks
from ..video.runtime import Runtime
from . import wire
from .parallel import split_for
from .tasks import KINDS

CONTROL = "control"


@ray.remote(concurrency_groups={CONTROL: 2})
class VideoWorker:
    def __init__(self, source, identity: str, settings):
        """source: the model's ModelSource; identity: what the driver's copy says it is (VideoComponents.identity);
        settings: the pool's WorkerSettings (threads, memory)."""
        source, settings = wire.decode(source), wire.decode(settings)
        gpus = ray.get_gpu_ids()
        self.where = f"GPU {gpus[0]}" if gpus else f"CPU worker {os.getpid()}"
        self.device = torch.device("cuda", 0) if gpus and torch.cuda.is_available() else torch.device("cpu")
        if settings.threads:
            torch.set_num_threads(settings.threads)
        if settings.gpu_memory_gb and self.device.type == "cuda":
            total = torch.cuda.get_device_properties(self.device).total_memory / 1e9
            torch.cuda.set_per_process_memory_fraction(min(1.0, settings.gpu_memory_gb / total), self.device)
        self.low_memory = settings.low_memory
        self.parts = source.load()
        if self.parts.identity != identity:
            raise ValueError(f"this worker loaded '{self.parts.identity}', the driver has '{identity}': every worker "
                             "needs the same model files at the same path")
        self.split = None
        self._stop = threading.Event()
        self._progress = ("", 0, 0)

    def describe(self) -> str:
        return self.where

    @ray.method(concurrency_group=CONTROL)
    def rendezvous(self) -> str:
        """An address the first rank of a gang offers for torch.distributed's rendezvous."""
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        return f"tcp://{ray.util.get_node_ip_address()}:{port}"

    def join(self, address: str, rank: int, world: int, plan) -> None:
        """Join this gang's torch.distributed group of `world` ranks (NCCL on GPUs, gloo on CPUs), leaving the
        group of an earlier gang; split videos by `plan` when the gang is one of its gangs."""
        plan = wire.decode(plan)
        if dist.is_initialized():
            dist.destroy_process_group()
        backend = "nccl" if self.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method=address, rank=rank, world_size=world,
                                **({"device_id": self.device} if backend == "nccl" else {}))
        self.split = split_for(plan) if plan.world == world else None

    def run(self, task, speed):
        task, speed = wire.decode(task), wire.decode(speed)
        self._stop.clear()
        self._progress = (task.key, 0, task.steps)

        def report(step, total, preview):
            self._progress = (task.key, step, total)

        fields = {"split": self.split} if self.split is not None else {}
        runtime = Runtime.on_device(self.device, hooks=Hooks(progress=report, should_stop=self._stop.is_set),
                                    speed=dataclasses.replace(speed, low_memory=speed.low_memory or self.low_memory),
                                    preview_every=0, **fields)
        return wire.encode(KINDS[task.kind].run(self.parts, task.payload, runtime))

    @ray.method(concurrency_group=CONTROL)
    def progress(self) -> tuple[str, int, int]:
        """(task key, steps done, steps) of the task running now (or the last one)."""
        return self._progress

    @ray.method(concurrency_group=CONTROL)
    def cancel(self) -> None:
        """Stop the running task at its next step (it raises Interrupted; nothing of it is returned)."""
        self._stop.set()
