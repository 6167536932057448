"""One video across processes: CFG-parallel and Ulysses sequence parallelism over a torch.distributed group.

Every rank runs the same denoising loop on the same latents (same seed, same scheduler); only the model calls of a
step are shared (video/runtime.StepSplit):
- CFG-parallel: the guided batch is (unconditional, conditional); in a CFG group of 2 each rank runs one row, and
  the two outputs are exchanged (all_gather), so every rank takes the same scheduler step.
- Ulysses (DeepSpeed-Ulysses): the video tokens are cut into equal runs, one per rank of a sequence group, before
  the first block and gathered after the last; every rank keeps all text tokens. Inside attention an all-to-all
  trades "my tokens, every head" for "every token, my heads"; the kernel runs on the rank's heads; a second
  all-to-all trades back, and the text tokens' heads are gathered. Everything else in a block works token by token.
The two combine: world = cfg x ulysses ranks, rank = c * ulysses + u (a sequence group is ranks of one c).

The head/sequence exchange is yunchang's all-to-all (`yunchang.comm.all_to_all.all_to_all_4D`, the DeepSpeed-Ulysses
primitive xDiT builds on). yunchang's attention layers themselves do not fit the pack's processor: they run their
own kernels rather than the pack's kernel choice (speed/attention.py), take no text tokens that every rank holds
whole (CogVideoX's joint attention), and need the sequence to divide by the group (CogVideoX-5b's 17,550 video
tokens do not divide by 4 or 8). So the processor keeps its kernel, this module exchanges the text heads, and the
video is padded to a multiple of the group; the padding is dropped before the kernel runs and after the last block,
so the result is the unsplit one up to rounding.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..optional import require
from ..speed.attention import Kernel, pack_processors
from ..speed.options import SpeedOptions

HEAD_COUNTS = "CogVideoX-5b's 48 heads divide by 2, 3, 4, 6 and 8"


@dataclass(frozen=True)
class ParallelPlan:
    """How many ranks share one video: `cfg` (1, or 2: the guided batch's halves) x `ulysses` (the tokens)."""
    cfg: int = 1
    ulysses: int = 1

    def __post_init__(self) -> None:
        if self.cfg not in (1, 2):
            raise ValueError(f"cfg_parallel splits the guided batch in its 2 halves: 1 or 2 ranks, got {self.cfg}")
        if not 1 <= self.ulysses <= 64:
            raise ValueError(f"ulysses must be between 1 and 64 ranks, got {self.ulysses}")

    @property
    def world(self) -> int:
        return self.cfg * self.ulysses

    def describe(self) -> str:
        return f"{self.world} ranks per video (CFG {self.cfg} x Ulysses {self.ulysses})"

    def check_heads(self, heads: int) -> None:
        if heads % self.ulysses:
            raise ValueError(f"Ulysses over {self.ulysses} ranks needs attention heads divisible by {self.ulysses}; "
                             f"this model has {heads} ({HEAD_COUNTS})")


def split_for(plan: ParallelPlan) -> "ParallelSplit":
    """This rank's split of `plan`, once torch.distributed is initialised with plan.world ranks. Every rank calls
    it (each group is created by all ranks, in the same order)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    if world != plan.world:
        raise ValueError(f"{plan.describe()} needs a process group of {plan.world}, this one has {world}")
    sequences = [[c * plan.ulysses + u for u in range(plan.ulysses)] for c in range(plan.cfg)]
    guided_pairs = [[c * plan.ulysses + u for c in range(plan.cfg)] for u in range(plan.ulysses)]
    return ParallelSplit(plan, _group_of(rank, guided_pairs), _group_of(rank, sequences))


def _group_of(rank: int, partition: list[list[int]]):
    """The group among `partition` that holds `rank`, or None where every group has one rank: a part split over one
    rank takes the plain path (its exchange would only copy: yunchang's all-to-all repacks Q, K and V even then,
    which cost the guided 5B step 12% on the H200)."""
    mine = None
    for ranks in partition:
        group = dist.new_group(ranks)  # every rank creates every group, in the same order
        mine = group if rank in ranks else mine
    return mine if len(partition[0]) > 1 else None


class ParallelSplit:
    """video/runtime.StepSplit over this rank's CFG group and sequence group (None: that part is not split; the
    benchmark times each part's code path alone at world size 1)."""

    def __init__(self, plan: ParallelPlan, cfg_group, sequence_group):
        self.plan, self.cfg_group, self.sequence_group = plan, cfg_group, sequence_group

    def velocity(self, forward, batch: int) -> torch.Tensor:
        size = 1 if self.cfg_group is None else dist.get_world_size(self.cfg_group)
        if self.cfg_group is None or batch % size:  # guidance off: one row, which every rank of the group computes
            return forward(slice(None))
        rows, rank = batch // size, dist.get_rank(self.cfg_group)
        mine = forward(slice(rank * rows, (rank + 1) * rows)).contiguous()
        every = [torch.empty_like(mine) for _ in range(size)]
        dist.all_gather(every, mine, group=self.cfg_group)
        return torch.cat(every)

    @contextlib.contextmanager
    def applied(self, transformer: torch.nn.Module, speed: SpeedOptions):
        if speed.step_cache:
            raise ValueError("step caching decides in every process on its own whether a step is skipped, so the "
                             "ranks of one video would part ways: turn step_cache off for a split video")
        self.plan.check_heads(transformer.config.num_attention_heads)
        if self.sequence_group is None:
            yield
            return
        shards = VideoShards(self.sequence_group)
        blocks = transformer.transformer_blocks

        def cut(module, args, kwargs):
            kwargs["hidden_states"] = shards.local(kwargs["hidden_states"])
            return args, kwargs

        def join(module, args, kwargs, output):
            hidden_states, text_states = output
            return shards.whole(hidden_states), text_states

        handles = [blocks[0].register_forward_pre_hook(cut, with_kwargs=True),
                   blocks[-1].register_forward_hook(join, with_kwargs=True)]
        processors = pack_processors(transformer)
        for processor in processors:
            processor.sequence = shards
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
            for processor in processors:
                processor.sequence = None


class VideoShards:
    """The video tokens of one model call cut into equal runs, one per rank of `group` (speed/attention's
    SequenceShards). The text tokens stay whole on every rank."""

    def __init__(self, group):
        self.group, self.size, self.rank = group, dist.get_world_size(group), dist.get_rank(group)
        self.tokens = self.run = 0

    @property
    def padded(self) -> int:
        return self.run * self.size

    def _pad(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """`tensor` with its token dimension `dim` (counted from the end) padded with zeros to `padded`."""
        return F.pad(tensor, (0, 0) * (-dim - 1) + (0, self.padded - tensor.shape[dim]))

    def local(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(B, tokens, C) -> this rank's run (B, run, C); remembers the call's token count."""
        self.tokens = hidden_states.shape[1]
        self.run = -(-self.tokens // self.size)
        start = self.rank * self.run
        return self._pad(hidden_states, -2)[:, start:start + self.run].contiguous()

    def whole(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Every rank's run (B, run, C) -> (B, tokens, C), the padding dropped."""
        every = [torch.empty_like(hidden_states) for _ in range(self.size)]
        dist.all_gather(every, hidden_states.contiguous(), group=self.group)
        return torch.cat(every, dim=1)[:, :self.tokens]

    def local_rotary(self, rotary):
        start = self.rank * self.run
        return tuple(self._pad(table, -2)[start:start + self.run] for table in rotary)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, text_tokens: int,
               kernel: Kernel) -> torch.Tensor:
        all_to_all = require("yunchang.comm.all_to_all", "Ulysses sequence parallelism").all_to_all_4D
        heads = query.shape[1] // self.size
        mine = slice(self.rank * heads, (self.rank + 1) * heads)

        def every_token(x: torch.Tensor) -> torch.Tensor:
            """(B, heads, text + run, D) -> (B, my heads, text + tokens, D)."""
            video = all_to_all(x[:, :, text_tokens:].transpose(1, 2), 2, 1, self.group)  # (B, padded, my heads, D)
            return torch.cat([x[:, mine, :text_tokens], video[:, :self.tokens].transpose(1, 2)], dim=2)

        out = kernel(every_token(query), every_token(key), every_token(value))
        text = out[:, :, :text_tokens].contiguous()
        video = self._pad(out[:, :, text_tokens:], -2).transpose(1, 2)          # (B, padded, my heads, D)
        video = all_to_all(video, 1, 2, self.group).transpose(1, 2)              # (B, heads, run, D)
        texts = [torch.empty_like(text) for _ in range(self.size)]
        dist.all_gather(texts, text, group=self.group)
        return torch.cat([torch.cat(texts, dim=1), video], dim=2)
