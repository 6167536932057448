"""Ray workers for the 4D graph's independent videos: one actor per GPU (or CPU worker), on this machine or a running
Ray cluster, each loading the model from the same source once, then taking tasks (video/workers.Task).

The driver (this process) keeps at most one task per gang of workers in flight: a free gang takes the next task, a
task lost with a dead worker goes back to the queue and runs elsewhere, and a finished result is handed to the
caller at once (the multi-view cache files it under its content key, so nothing finished is made twice). Progress
of every running task adds up in the caller's one progress bar. Cancel asks every running worker to stop at its next
step and waits for them, so nothing partial comes back. With a ParallelPlan of more than one rank, workers form
gangs of plan.world, each with a torch.distributed group (NCCL on GPUs, gloo on CPUs) that splits one video
(parallel.py). A task that every worker takes at once (a training run, tasks.KINDS' whole_pool) goes to one gang of
all the pool's workers, joined in one group the same way.

Ray is imported only here and in worker.py, on first use; without it the pack runs in one process as before.
"""
from __future__ import annotations

import atexit
import dataclasses
import importlib
import importlib.util
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..hooks import Interrupted
from ..optional import require
from ..video.components import VideoComponents
from ..video.runtime import Runtime
from ..video.workers import Task
from . import wire
from .parallel import ParallelPlan
from .tasks import KINDS

POLL_SECONDS = 0.2
STOP_WAIT_SECONDS = 120


@dataclass(frozen=True)
class WorkerSettings:
    """What each worker may hold: `threads` for torch on the CPU (0: Ray's default), a cap on the GPU memory it may
    use (0: the whole GPU), and the 24 GB mode (T5 and the transformer never on the GPU together)."""
    threads: int = 0
    gpu_memory_gb: float = 0.0
    low_memory: bool = False


@dataclass(frozen=True)
class WorkersSpec:
    """Where the workers run. gpus: GPU ids of this machine, one worker each; or count: that many workers (GPUs of
    the cluster at `address`, or of this machine; CPU workers with cpu=True, for tests and machines without GPUs).
    address: a running Ray cluster ("auto", "HOST:PORT" or "ray://HOST:PORT"); None: a Ray started here."""
    count: int = 0
    gpus: tuple[int, ...] = ()
    address: str | None = None
    cpu: bool = False
    plan: ParallelPlan = ParallelPlan()
    settings: WorkerSettings = WorkerSettings()

    def __post_init__(self) -> None:
        if bool(self.gpus) == bool(self.count):
            raise ValueError(f"workers: give GPU ids or a worker count, not both or neither (gpus {self.gpus}, "
                             f"count {self.count})")
        if self.gpus and (self.address or self.cpu):
            raise ValueError("workers: GPU ids name GPUs of this machine; with a Ray address or CPU workers give a "
                             "count instead")
        if len(set(self.gpus)) != len(self.gpus) or any(gpu < 0 for gpu in self.gpus):
            raise ValueError(f"workers: GPU ids must be distinct numbers >= 0, got {self.gpus}")
        if self.size % self.plan.world:
            raise ValueError(f"workers: {self.size} workers do not form gangs of {self.plan.describe()}")

    @classmethod
    def parse(cls, devices: str, address: str = "", **fields) -> "WorkersSpec":
        """From the Workers node's text: "all" (every GPU here), GPU ids "0,2,3", a count "4" (GPUs of the cluster
        at `address`, or of this machine) or "cpu:2" (CPU workers)."""
        text, address = devices.strip().lower(), address.strip() or None
        if text.startswith("cpu:") and text[4:].isdigit():
            return cls(count=int(text[4:]), cpu=True, address=address, **fields)
        if text.isdigit():
            return cls(count=int(text), address=address, **fields)
        if text == "all":
            count = torch.cuda.device_count()
            if not count and not address:
                raise ValueError("workers 'all': this machine has no CUDA GPU; give 'cpu:N' for N CPU workers, or a "
                                 "Ray address and a worker count")
            return cls(count=count, address=address, **fields) if address else cls(gpus=tuple(range(count)), **fields)
        ids = [part.strip() for part in text.split(",")]
        if not all(part.isdigit() for part in ids):
            raise ValueError(f"workers: {devices!r} is not 'all', GPU ids such as '0,1,3', a worker count such as '4' "
                             "or 'cpu:N'")
        return cls(gpus=tuple(int(part) for part in ids), address=address, **fields)

    @property
    def size(self) -> int:
        return len(self.gpus) or self.count

    def describe(self) -> str:
        where = (f"GPUs {', '.join(map(str, self.gpus))}" if self.gpus else
                 f"{self.count} {'CPU' if self.cpu else 'GPU'} workers")
        cluster = f" on the Ray cluster at {self.address}" if self.address else ""
        split = f", {self.plan.describe()}" if self.plan.world > 1 else ""
        return f"{where}{cluster}{split}"


def worker_module():
    """worker.py under the name `dimx_core`, which a worker process imports from the pack's folder on its path.
    Under ComfyUI the library has another name (wire.py says why), so the driver imports that name once too."""
    if "dimx_core" not in sys.modules:
        folder = Path(__file__).resolve().parents[1]
        spec = importlib.util.spec_from_file_location("dimx_core", folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["dimx_core"] = module
        spec.loader.exec_module(module)
    return importlib.import_module("dimx_core.distributed.worker")


_STARTED: list[tuple] = []  # what the Ray this module started was started for (its resources)


def start_ray(spec: WorkersSpec):
    """Connect to the cluster at spec.address, or start Ray on this machine with the resources the spec names. A
    Ray this module started for other resources (other GPU ids) is shut down first; one started by someone else in
    this process is used as it is."""
    ray = require("ray")
    gpus, cpus = 0 if spec.cpu else (len(spec.gpus) or spec.count), max(spec.size, os.cpu_count() or 1)
    wanted = (spec.address,) if spec.address else (spec.gpus, gpus, cpus)
    if ray.is_initialized() and _STARTED and _STARTED[0] != wanted:
        ray.shutdown()
    if ray.is_initialized():
        return ray
    _STARTED[:] = [wanted]
    search_path = [str(Path(__file__).resolve().parents[2])]  # the folder that holds dimx_core/
    job = ray.job_config.JobConfig(code_search_path=search_path)
    options = dict(include_dashboard=False, configure_logging=False, job_config=job)
    if spec.address:
        ray.init(address=spec.address, **options)
        return ray
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if spec.gpus:  # the local Ray hands out exactly these GPUs
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, spec.gpus))
    try:
        ray.init(num_cpus=cpus, num_gpus=gpus, **options)
    finally:
        if spec.gpus:
            os.environ.pop("CUDA_VISIBLE_DEVICES") if visible is None else os.environ.update(
                CUDA_VISIBLE_DEVICES=visible)
    return ray


@dataclass
class Gang:
    """Workers that take one task together (one worker when the plan has one rank); members[0] returns its result.
    places: where each member runs ("GPU 1")."""
    members: list
    places: list[str]
    running: tuple[Task, list] | None = None  # the task and each member's result reference

    @property
    def where(self) -> str:
        return " + ".join(self.places)


class WorkerPool:
    """Workers as spec says, loaded with one model; `run` hands them tasks (video/workers.Workers)."""

    def __init__(self, spec: WorkersSpec, say: Callable[[str], None] = lambda text: None):
        self.spec, self.say = spec, say
        self.ray = None
        self.gangs: list[Gang] = []
        self.model: str | None = None  # identity of the model the workers hold

    def with_messages(self, say: Callable[[str], None]) -> "WorkerPool":
        """The same workers, telling `say` what runs where ("video 3 of 13 on GPU 1")."""
        self.say = say
        return self

    @property
    def workers(self) -> list:
        return [member for gang in self.gangs for member in gang.members]

    # --- starting ------------------------------------------------------------------------------------------------

    def ensure(self, parts: VideoComponents, gang_size: int = 0) -> None:
        """Workers holding `parts`' model, in gangs of `gang_size` (0: the plan's ranks per video): started (again)
        when there are none, some died, or they hold another model; joined in other groups when the gangs differ."""
        if parts.origin is None:
            raise ValueError("workers load the model from its folder or files, but this model was built in code: "
                             "load it from a folder (Load Video Model) to use workers")
        if self.model != parts.identity or len(self.workers) != self.spec.size:
            self._start(parts)
        self._form_gangs(gang_size or self.spec.plan.world)

    def _start(self, parts: VideoComponents) -> None:
        self.close()
        self.ray = start_ray(self.spec)
        actor = worker_module().VideoWorker
        resources = {"num_cpus": 1, "num_gpus": 0 if self.spec.cpu else 1}
        members = [actor.options(**resources).remote(wire.encode(parts.origin), parts.identity,
                                                     wire.encode(self.spec.settings))
                   for _ in range(self.spec.size)]
        try:
            places = self.ray.get([member.describe.remote() for member in members])
        except self.ray.exceptions.RayActorError as err:
            for member in members:
                self.ray.kill(member)
            raise RuntimeError(f"the workers could not load the model: {err}") from err
        self.gangs = [Gang([member], [place]) for member, place in zip(members, places)]
        self.model = parts.identity

    def _form_gangs(self, size: int) -> None:
        """Regroup the workers in gangs of `size`, each joined in a torch.distributed group of its own (NCCL on
        GPUs, gloo on CPUs) when size > 1; a gang of the plan's size splits videos by the plan."""
        if all(len(gang.members) == size for gang in self.gangs):
            return
        members = [(member, place) for gang in self.gangs for member, place in zip(gang.members, gang.places)]
        self.gangs = [Gang([member for member, _ in members[i:i + size]], [place for _, place in members[i:i + size]])
                      for i in range(0, len(members), size)]
        if size == 1:
            return
        joined, plan = [], wire.encode(self.spec.plan)
        for gang in self.gangs:
            address = self.ray.get(gang.members[0].rendezvous.remote())
            joined += [member.join.remote(address, rank, size, plan) for rank, member in enumerate(gang.members)]
        self.ray.get(joined)

    def close(self) -> None:
        """Stop every worker (their memory is freed); the next run starts new ones."""
        if self.ray is not None and self.ray.is_initialized():  # after ray.shutdown() they are gone already
            for member in self.workers:
                self.ray.kill(member)
        self.gangs, self.model = [], None

    # --- running -------------------------------------------------------------------------------------------------

    def run(self, parts: VideoComponents, tasks: list[Task], runtime: Runtime,
            on_done: Callable[[Task, object, str], None]) -> None:
        unique = list({task.key: task for task in tasks}.values())  # equal keys, equal results: made once
        if not unique:
            return
        whole_pool = {KINDS[task.kind].whole_pool for task in unique}
        if len(whole_pool) > 1:
            raise ValueError("one run gives the workers either tasks for the whole pool or tasks for one gang each, "
                             "not both")
        self.ensure(parts, self.spec.size if whole_pool.pop() else 0)
        hooks, speed = runtime.hooks, wire.encode(dataclasses.replace(runtime.speed, compile_cache=None))
        queue, total, finished, shown = deque(unique), sum(task.steps for task in unique), 0, 0
        while queue or self._busy():
            if hooks.should_stop():
                for task, frames, where in self._stop_all():  # what finished as the workers stopped is kept
                    on_done(task, wire.decode(frames), where)
                raise Interrupted()
            for gang in self.gangs:
                if gang.running is None and queue:
                    task = queue.popleft()
                    gang.running = (task, [member.run.remote(wire.encode(task), speed) for member in gang.members])
                    self.say(f"{task.label} on {gang.where}")
            for gang, outcome in self._finished():
                task, _ = gang.running
                gang.running = None
                if outcome is None:  # a worker died: its task runs again on another gang
                    self.say(f"{gang.where} stopped; {task.label} goes to another worker")
                    self._drop(gang)
                    queue.appendleft(task)
                    continue
                finished += task.steps
                on_done(task, wire.decode(outcome), gang.where)
            if (queue or self._busy()) and not self.gangs:
                raise RuntimeError("every worker stopped (see the Ray log); what finished is kept (videos in their "
                                   "cache, training in its checkpoint): run again to go on")
            # a worker too busy to answer in time reports nothing this round: the bar waits instead of going back
            shown = max(shown, finished + self._running_steps())
            hooks.progress(shown, total, None)

    def _busy(self) -> list[Gang]:
        return [gang for gang in self.gangs if gang.running is not None]

    def _finished(self) -> list[tuple[Gang, object]]:
        """Gangs whose task ended, with the result (None: a worker of the gang died). Waits up to POLL_SECONDS."""
        busy = self._busy()
        references = [reference for gang in busy for reference in gang.running[1]]
        if not references:
            return []
        ready, _ = self.ray.wait(references, num_returns=len(references), timeout=POLL_SECONDS)
        ready = set(ready)
        ended = []
        for gang in busy:
            results = gang.running[1]
            try:
                if any(r in ready for r in results) and all(r in ready for r in results):
                    ended.append((gang, self.ray.get(results)[0]))
                elif any(r in ready for r in results):
                    self.ray.get([r for r in results if r in ready])  # a member that ended early failed: see why
            except self.ray.exceptions.RayActorError:
                ended.append((gang, None))
            except self.ray.exceptions.RayTaskError as err:  # the task failed: the caller sees why
                self._stop_all()
                raise err.as_instanceof_cause() from None
        return ended

    def _running_steps(self) -> int:
        busy = self._busy()
        try:
            reports = self.ray.get([gang.members[0].progress.remote() for gang in busy], timeout=POLL_SECONDS)
        except (self.ray.exceptions.GetTimeoutError, self.ray.exceptions.RayActorError):
            return 0
        return sum(step for (key, step, _), gang in zip(reports, busy) if key == gang.running[0].key)

    def _drop(self, gang: Gang) -> None:
        """A gang with a dead member cannot split a video any more: all its workers go."""
        for member in gang.members:
            self.ray.kill(member)
        self.gangs.remove(gang)

    def _stop_all(self) -> list[tuple[Task, object, str]]:
        """Ask every running worker to stop and wait until each has (so nothing of theirs arrives later); returns
        (task, result, where) of the tasks that finished all the same."""
        busy = self._busy()
        for gang in busy:
            for member in gang.members:
                member.cancel.remote()
        references = [reference for gang in busy for reference in gang.running[1]]
        self.ray.wait(references, num_returns=len(references), timeout=STOP_WAIT_SECONDS)
        finished = []
        for gang in busy:
            (task, results), gang.running = gang.running, None
            try:
                finished.append((task, self.ray.get(results, timeout=0)[0], gang.where))
            except self.ray.exceptions.RayError:  # stopped (Interrupted), died, or not stopped yet (a time-out)
                continue
        return finished


_POOLS: dict[WorkersSpec, WorkerPool] = {}


def pool_for(spec: WorkersSpec) -> WorkerPool:
    """The pool of this process for `spec`, kept between runs (loading the model is the slow part); a pool of
    another spec is closed first, so one set of workers holds GPUs at a time."""
    for other in [other for other in _POOLS if other != spec]:
        _POOLS.pop(other).close()
    return _POOLS.setdefault(spec, WorkerPool(spec))


def close_pools() -> None:
    for spec in list(_POOLS):
        _POOLS.pop(spec).close()


atexit.register(close_pools)
