"""Train a director LoRA: the DimensionX ST-Director recipe on diffusers + peft, in one function.

The objective is the model's own: for a clip's latents x0, noise eps and a timestep t drawn uniformly from the
scheduler's training timesteps, the transformer sees the noised latents x_t next to the first frame's latents
(concatenated on channels, as at inference) and is trained to predict the velocity v = sqrt(a_t) eps -
sqrt(1 - a_t) x0 (v-prediction, zero-terminal-SNR) under a plain MSE. Conditions are computed once up front
(conditions.py), then T5 and the VAE leave the GPU.

`train_director` takes a torch.distributed process group or None: with a group, every process takes its own
slots of each step's global batch and the LoRA gradients are averaged across the group before each optimizer
step, so N processes train exactly what one process with an N times larger batch trains; the first process
writes the checkpoints, the file and the validation videos.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .. import __version__
from ..datasets.layout import Dataset
from ..directors import schedule
from ..directors.adapters import activate
from ..hooks import Hooks, Interrupted
from ..speed.compile import set_compiled
from ..speed.options import SpeedOptions
from ..video.components import VideoComponents
from ..video.request import SamplerSettings, VideoRequest
from ..video.runtime import Runtime
from ..video.sampling import generate, rotary_embeddings
from ..video.solvers import make_scheduler
from .checkpoint import CheckpointStore, run_identity
from .conditions import Conditions, offload_if_possible, padded_latent_frames, precompute, seeded
from .lora import TRAINING_ADAPTER, add_training_adapter, remove_training_adapter, save_director, training_director
from .options import OPTIMIZERS, SPARSE_VIEW_STEPS, TrainOptions

TRAIN_PURPOSE, ORDER_PURPOSE, EVAL_PURPOSE = 2, 3, 4  # generator streams (conditions.seeded)


@dataclass
class TrainResult:
    path: Path | None                    # the director file (None on processes other than the first)
    steps_done: int
    resumed_from: int                    # 0 for a fresh run
    stopped_early: bool
    losses: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    validations: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (step, (frames, H, W, 3))
    seconds_per_step: float = 0.0
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        first = self.evals[0][1] if self.evals else float("nan")
        last = self.evals[-1][1] if self.evals else float("nan")
        lines = [f"{self.steps_done} steps" + (f" (resumed at step {self.resumed_from})" if self.resumed_from else "")
                 + (" - stopped early: the evaluation loss stopped improving" if self.stopped_early else ""),
                 f"fixed-noise evaluation loss {first:.4g} -> {last:.4g}" if self.evals else "no evaluation",
                 f"{self.seconds_per_step:.3g} s per step (evaluations included)", *self.notes]
        if self.path is not None:
            lines.insert(0, f"director: {self.path}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Sample:
    clip: int
    generator: torch.Generator
    dropout: float


def _group_size_rank(group) -> tuple[int, int]:
    if group is None:
        return 1, 0
    import torch.distributed as dist

    return dist.get_world_size(group), dist.get_rank(group)


def _all_agree(flag: bool, group, device: torch.device) -> bool:
    """True when any process says so (a Cancel on one process stops all)."""
    if group is None:
        return flag
    import torch.distributed as dist

    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=group)
    return bool(value.item())


def _average_gradients(parameters: list[torch.Tensor], group) -> None:
    if group is None:
        return
    import torch.distributed as dist

    grads = [p.grad for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=group)
    flat /= dist.get_world_size(group)
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
        offset += grad.numel()


class DataOrder:
    """Clip of every global slot: each epoch a permutation of the clips drawn from (seed, epoch)."""

    def __init__(self, clips: int, seed: int):
        self.clips, self.seed, self._epochs = clips, seed, {}

    def clip(self, slot: int) -> int:
        epoch, position = divmod(slot, self.clips)
        if epoch not in self._epochs:
            self._epochs = {epoch: torch.randperm(self.clips, generator=seeded(self.seed, ORDER_PURPOSE, epoch))}
        return int(self._epochs[epoch][position])


def _ensure_autograd_weights(module: torch.nn.Module) -> None:
    """Hosts such as ComfyUI load models under inference_mode, whose tensors autograd cannot save for backward;
    swap any such parameter or buffer for an ordinary copy (one tensor at a time)."""
    for owner in module.modules():
        for name, parameter in list(owner._parameters.items()):
            if parameter is not None and parameter.is_inference():
                owner._parameters[name] = torch.nn.Parameter(parameter.clone(), requires_grad=parameter.requires_grad)
        for name, buffer in list(owner._buffers.items()):
            if buffer is not None and buffer.is_inference():
                owner._buffers[name] = buffer.clone()


def _batch(conditions: Conditions, samples: list[Sample], scheduler, padding: int, device, dtype):
    """Latents, noise, timesteps, the given frames' conditioning and prompt states of a batch of samples."""
    latents, noises, steps, images, prompts = [], [], [], [], []
    for sample in samples:
        clip, generator = conditions.clips[sample.clip], sample.generator
        x0 = clip.latent_mean + clip.latent_std * torch.randn(clip.latent_mean.shape, generator=generator,
                                                               dtype=clip.latent_mean.dtype)
        if padding:  # CogVideoX 1.5 denoises latent frames in pairs: the first frame is repeated in front
            x0 = torch.cat([x0[:1]] * padding + [x0])
        noises.append(torch.randn(x0.shape, generator=generator, dtype=x0.dtype))
        steps.append(int(torch.randint(scheduler.config.num_train_timesteps, (1,), generator=generator)))
        variant = int(torch.randint(len(clip.images), (1,), generator=generator))
        kept = float(torch.rand(1, generator=generator)) >= sample.dropout
        if conditions.dropped is not None:  # a start/end-frame model: the whole conditioning, or nothing given
            images.append(clip.images[variant] if kept else conditions.dropped)
        else:
            first = clip.images[variant] if kept else torch.zeros_like(clip.images[variant])
            images.append(torch.cat([first[None], first.new_zeros(len(x0) - 1, *first.shape)]))
        latents.append(x0)
        prompts.append(conditions.prompts[clip.prompt])
    stack = lambda items: torch.stack(items).to(device, dtype)  # noqa: E731
    return (stack(latents), stack(noises), torch.tensor(steps, device=device), stack(images), stack(prompts))


def director_loss(transformer: torch.nn.Module, scheduler, latents: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor, image_latents: torch.Tensor, prompt_states: torch.Tensor) -> torch.Tensor:
    """v-prediction MSE of one batch: (B, F, C, h, w) latents, noise and first-frame latents, (B,) timesteps."""
    config = transformer.config
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = scheduler.get_velocity(latents, noise, timesteps)
    rotary = rotary_embeddings(config, latents.shape, latents.device) if config.use_rotary_positional_embeddings \
        else None
    ofs = latents.new_full((1,), 2.0) if config.ofs_embed_dim is not None else None
    velocity = transformer(hidden_states=torch.cat([noisy, image_latents], dim=2), encoder_hidden_states=prompt_states,
                           timestep=timesteps, ofs=ofs, image_rotary_emb=rotary, return_dict=False)[0]
    return F.mse_loss(velocity.float(), target.float())


def optimizer_step(loss: torch.Tensor, parameters: list[torch.Tensor], optimizer, max_grad_norm: float,
                   group=None) -> None:
    """Backward, gradients averaged over the process group, clipped, one optimizer step."""
    loss.backward()
    _average_gradients(parameters, group)
    if max_grad_norm:
        torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def evaluation_loss(transformer, scheduler, conditions: Conditions, options: TrainOptions, padding: int, device,
                    dtype) -> float:
    """The loss on (clip, timestep, noise) triples fixed for the whole run, timesteps spread evenly over the
    schedule: unlike the training loss, comparable from one evaluation to the next."""
    total, count = 0.0, options.eval_samples
    for index in range(count):
        sample = Sample(index % len(conditions.clips), seeded(options.seed, EVAL_PURPOSE, index), 0.0)
        latents, noise, _, images, prompts = _batch(conditions, [sample], scheduler, padding, device, dtype)
        timestep = int((index + 0.5) / count * scheduler.config.num_train_timesteps)
        total += float(director_loss(transformer, scheduler, latents, noise, torch.tensor([timestep], device=device),
                                     images, prompts))
    return total / count


def _validation_video(parts: VideoComponents, conditions: Conditions, options: TrainOptions,
                      runtime: Runtime) -> torch.Tensor:
    """A video with the director as it is now, at strength 1.0, fixed seed and first frame (Cancel works inside
    it; the progress bar keeps counting training steps)."""
    director = training_director(options.role)
    settings = SamplerSettings(steps=options.validation_inference_steps, guidance=options.validation_guidance,
                               seed=options.validation_seed)
    request = VideoRequest(conditions.validation_image, conditions.validation_prompt, conditions.negative, settings,
                           (director,), schedule.constant([director.name], settings.steps),
                           end_image=conditions.validation_end_image)
    run = Runtime(place=runtime.place, offload=runtime.offload, hooks=Hooks(should_stop=runtime.hooks.should_stop),
                  speed=SpeedOptions(low_memory=options.low_memory), preview_every=0)
    try:
        result = generate(parts, request, run)
    finally:
        activate(parts.transformer, {TRAINING_ADAPTER: 1.0})  # the run released every adapter
    offload_if_possible(runtime, parts.vae)
    return result.frames


def _file_info(options: TrainOptions, dataset: Dataset, parts: VideoComponents, step: int, evals) -> dict:
    kind = {"S": "S-Director (camera motion)", "T": "T-Director (object motion)"}[options.role]
    last = f", evaluation loss {evals[-1][1]:.4g}" if evals else ""
    return {"role": options.role, "steps": step, "rank": options.rank, "alpha": options.alpha,
            "learning_rate": options.learning_rate, "batch_size": options.batch_size, "seed": options.seed,
            "optimizer": options.optimizer, "dataset": dataset.describe(), "base_model": parts.spec.describe(),
            "trainer": f"DimensionX {__version__} (diffusers + peft)",
            "summary": f"{kind}, {step} steps at rank {options.rank}, alpha {options.alpha:g}, lr "
                       f"{options.learning_rate:g} on {dataset.describe()}{last}"}


def training_run_id(parts: VideoComponents, dataset: Dataset, options: TrainOptions, processes: int = 1) -> str:
    """Names a run for its checkpoint: equal for runs that train the same weights step by step."""
    return run_identity(f"{parts.source}|{parts.spec.describe()}", dataset.fingerprint(),
                        {**options.weights_identity(), "processes": processes})


@torch.inference_mode(False)  # hosts such as ComfyUI run nodes under inference_mode; training needs autograd
@torch.enable_grad()
def train_director(parts: VideoComponents, dataset: Dataset, options: TrainOptions, out: str | Path,
                   runtime: Runtime, *, checkpoints: str | Path | None = None, resume: bool = True,
                   validation_prompt: str | None = None, validation_image: torch.Tensor | None = None,
                   process_group=None, say: Callable[[str], None] = lambda text: None) -> TrainResult:
    """Train a director on `dataset` and write it to `out` (.safetensors). `checkpoints`: the folder of this
    run's checkpoint (None: no checkpoints); `resume` continues from it. `runtime` places and offloads modules
    (the host's memory manager, or .to()) and carries progress and Cancel: a Cancel saves a checkpoint of the last
    finished step and raises Interrupted. Its speed options are not used: training runs diffusers' attention."""
    hooks = runtime.hooks
    transformer, dtype = parts.transformer, parts.transformer.dtype
    if dtype == torch.float16:
        raise ValueError("training in fp16 is not supported (no loss scaling); load the model in bf16, or in fp32 on "
                         "a CPU")
    world, rank = _group_size_rank(process_group)
    lead = rank == 0
    store = CheckpointStore(checkpoints) if checkpoints is not None else None
    identity = training_run_id(parts, dataset, options, world)
    state = store.load(identity) if store is not None and resume else None
    if store is not None and not resume and store.step_saved():
        say(f"starting over: the checkpoint at step {store.step_saved()} in {store.folder} will be replaced")

    if parts.spec.takes_end_frame:
        hint = (f"; the paper stops sparse-view S-Directors at {SPARSE_VIEW_STEPS} steps"
                if options.kind == "s" and options.steps != SPARSE_VIEW_STEPS else "")
        say(f"start/end-frame base ({parts.spec.describe()}): each clip's first and last frames are given{hint}")
    conditions = precompute(parts, dataset, runtime, variants=options.image_noise_variants, seed=options.seed,
                            low_memory=options.low_memory, validation_prompt=validation_prompt,
                            validation_image=validation_image, say=say)
    device = runtime.place(transformer)
    _ensure_autograd_weights(transformer)
    set_compiled(transformer, False)  # blocks a sampler compiled run plain: autograd and a new adapter would recompile
    scheduler = make_scheduler("ddim", parts.scheduler_config)
    padding = padded_latent_frames(parts) - parts.spec.latent_frames
    parameters, config = add_training_adapter(transformer, options.rank, options.alpha, options.seed)
    try:
        if options.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        description, build = OPTIMIZERS[options.optimizer]
        optimizer = build(parameters, options.learning_rate, options.weight_decay)
        losses, evals, start, best, since_best = [], [], 0, math.inf, 0
        if state is not None:
            with torch.no_grad():
                for parameter, saved in zip(parameters, state["lora"]):
                    parameter.copy_(saved)
            optimizer.load_state_dict(state["optimizer"])
            losses, evals, start = list(map(tuple, state["losses"])), list(map(tuple, state["evals"])), state["step"]
            best, since_best = state["best"], state["since_best"]
            say(f"resuming at step {start} from {store.path}")

        def snapshot(step: int) -> dict:
            return {"identity": identity, "step": step, "lora": [p.detach().cpu().clone() for p in parameters],
                    "optimizer": optimizer.state_dict(), "losses": losses, "evals": evals, "best": best,
                    "since_best": since_best}

        result = TrainResult(None, start, start, False, losses, evals)
        order = DataOrder(len(conditions.clips), options.seed)
        global_batch = world * options.batch_size
        step, started = start, time.perf_counter()
        try:
            for step in range(start + 1, options.steps + 1):
                slots = range((step - 1) * global_batch + rank * options.batch_size,
                              (step - 1) * global_batch + (rank + 1) * options.batch_size)
                samples = [Sample(order.clip(slot), seeded(options.seed, TRAIN_PURPOSE, slot), options.image_dropout)
                           for slot in slots]
                loss = director_loss(transformer, scheduler, *_batch(conditions, samples, scheduler, padding, device,
                                                                     dtype))
                optimizer_step(loss, parameters, optimizer, options.max_grad_norm, process_group)
                value = float(loss.detach())
                losses.append((step, value))
                if options.eval_every and (step % options.eval_every == 0 or step == options.steps or step == 1):
                    evals.append((step, evaluation_loss(transformer, scheduler, conditions, options, padding, device,
                                                        dtype)))
                    best, since_best = (evals[-1][1], 0) if evals[-1][1] < best else (best, since_best + 1)
                say(f"step {step} of {options.steps}, loss {value:.4f}"
                    + (f", evaluation {evals[-1][1]:.4f}" if evals and evals[-1][0] == step else ""))
                hooks.progress(step, options.steps, None)
                if lead and store is not None and options.checkpoint_every and step % options.checkpoint_every == 0:
                    store.save(snapshot(step))
                if lead and step in options.validation_steps and step < options.steps:
                    say(f"rendering the validation video of step {step}")
                    result.validations.append((step, _validation_video(parts, conditions, options, runtime)))
                if _all_agree(hooks.should_stop(), process_group, device):
                    raise Interrupted()
                if options.early_stop_patience and since_best >= options.early_stop_patience:
                    result.stopped_early = True
                    say(f"stopping early at step {step}: no better evaluation loss in {since_best} evaluations")
                    break
        except Interrupted:
            if lead and store is not None and step > start:
                store.save(snapshot(step))
                say(f"cancelled: step {step} saved in {store.path}; run again with resume to continue")
            raise
        result.steps_done = step
        result.seconds_per_step = (time.perf_counter() - started) / max(step - start, 1)
        if lead and store is not None:
            store.save(snapshot(step))
        if lead and options.validation:  # the last step's (also when resumed at the last step, or stopped early)
            say(f"rendering the validation video of step {step}")
            result.validations.append((step, _validation_video(parts, conditions, options, runtime)))
        if lead:
            result.path = save_director(out, transformer, config, _file_info(options, dataset, parts, step, evals),
                                        dtype)
        result.notes.append(f"optimizer: {description}")
        if dataset.kind and dataset.kind[0] != options.kind:
            result.notes.append(f"note: the dataset was built as {dataset.kind}-variant but a {options.role}-Director "
                                "was trained on it")
        return result
    finally:
        if options.gradient_checkpointing:
            transformer.disable_gradient_checkpointing()
        remove_training_adapter(transformer)
