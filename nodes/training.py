"""Train Director LoRA: a dataset and a model in, a director LoRA in models/loras out (diffusers + peft)."""
from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io

from ..dimx_core.datasets.clips import write_clip
from ..dimx_core.datasets.layout import open_dataset
from ..dimx_core.training.curve import loss_curve
from ..dimx_core.training.options import OPTIMIZERS, ROLES, TrainOptions, parse_steps
from ..dimx_core.training.job import TrainingJob, run_training
from ..dimx_core.training.trainer import training_run_id
from ..dimx_core.video.runtime import Runtime
from ..dimx_core.video.sampling import FPS
from . import host
from .types import DatasetType, VideoModelType, WorkersType

DEFAULTS = TrainOptions()
KINDS = {role: kind for kind, role in ROLES.items()}  # "S" -> "s"
TRAINING_MEMORY = 12 << 30  # bytes asked of ComfyUI's memory manager for activations and optimizer state


class TrainDirectorLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXTrainDirectorLoRA",
            display_name="Train Director LoRA (DimensionX)",
            category="DimensionX/training",
            description="Trains your own director (the paper's ST-Director): a LoRA on the attention of every "
                        "transformer block of the loaded image-to-video model, on a spatial-variant dataset "
                        "(S-Director, camera motion) or a temporal-variant one (T-Director, object motion). "
                        "Defaults are the paper's: rank 256, learning rate 1e-3, 3000 steps. Resumable: Cancel keeps "
                        "a checkpoint and queueing again continues it. Writes the file into models/loras, where Load "
                        "Director LoRA finds it (strength 1.0 = as trained); shows the loss curve and a validation "
                        "video. With Workers connected, the run is shared by Ray workers (several GPUs or hosts).",
            inputs=[
                VideoModelType.Input("model", tooltip="From Load Video Model (bf16 on a GPU; fp32 for CPU tests)."),
                io.String.Input("lora_name", default="dimensionx/my_director",
                                tooltip="File to write in models/loras (.safetensors is added)."),
                io.Combo.Input("kind", options=list(KINDS), default="S",
                               tooltip="S: S-Director (camera motion through a frozen scene). T: T-Director (motion "
                                       "under a frozen camera). Recorded in the file."),
                io.Int.Input("rank", default=DEFAULTS.rank, min=1, max=1024, tooltip="LoRA rank; 256 as in the paper."),
                io.Float.Input("alpha", default=DEFAULTS.alpha, min=0.001, max=4096.0, step=0.5,
                               tooltip="LoRA alpha: the trained effect is alpha/rank x B·A. 1 as DimensionX trained "
                                       "(SAT); the file records it, so strength 1.0 always means as trained."),
                io.Float.Input("learning_rate", default=DEFAULTS.learning_rate, min=1e-7, max=1.0, step=1e-5,
                               round=False, tooltip="AdamW learning rate, constant; 1e-3 as in the paper."),
                io.Int.Input("steps", default=DEFAULTS.steps, min=1, max=1_000_000,
                             tooltip="Training steps; 3000 as in the paper (its sparse-view S-Directors stop at "
                                     "1000)."),
                io.Int.Input("batch_size", default=DEFAULTS.batch_size, min=1, max=64, tooltip="Clips per step."),
                io.Combo.Input("optimizer", options=list(OPTIMIZERS), default=DEFAULTS.optimizer,
                               tooltip="; ".join(f"{name}: {text}" for name, (text, _) in OPTIMIZERS.items())),
                io.Boolean.Input("gradient_checkpointing", default=DEFAULTS.gradient_checkpointing,
                                 tooltip="Recompute each block's activations during backward: far less memory, "
                                         "slower steps. 49 frames at 720x480, rank 256 on an H200: 21 GB and 3.4 s "
                                         "a step with it, 83 GB and 2.45 s without (bench/RESULTS-train.md)."),
                io.Boolean.Input("low_memory", default=False,
                                 tooltip="24 GB mode: the VAE encodes and decodes in tiles. Use with adamw8bit and "
                                         "gradient checkpointing on a 24 GB GPU."),
                io.Int.Input("checkpoint_every", default=DEFAULTS.checkpoint_every, min=0, max=100_000,
                             tooltip="Steps between resumable checkpoints (0: only when cancelled)."),
                io.Int.Input("eval_every", default=DEFAULTS.eval_every, min=0, max=100_000,
                             tooltip="Steps between fixed-noise evaluations (the orange curve; 0: off)."),
                io.Int.Input("early_stop_patience", default=0, min=0, max=10_000,
                             tooltip="Stop after this many evaluations without a better evaluation loss (0: never)."),
                io.String.Input("validation_steps", default="",
                                tooltip="Steps that also render a validation video, e.g. '1000, 2000'; the last step "
                                        "always does. Each is saved under output/DimensionX/training/."),
                io.Int.Input("validation_inference_steps", default=DEFAULTS.validation_inference_steps, min=1,
                             max=1000, tooltip="Denoising steps of a validation video (guidance 6, fixed seed)."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed of the data order, timesteps and noise (a resumed run repeats them)."),
                io.Boolean.Input("resume", default=True,
                                 tooltip="Continue a cancelled run with the same model, dataset and options from its "
                                         "last checkpoint (kept in ComfyUI's user folder)."),
                io.Boolean.Input("overwrite", default=False,
                                 tooltip="Replace an existing file of the same name in models/loras."),
                DatasetType.Input("dataset", optional=True,
                              tooltip="From Build Spatial Dataset or Curate Temporal Dataset."),
                io.String.Input("dataset_folder", default="", optional=True,
                                tooltip="Or a dataset folder (prompts.txt + videos.txt) inside ComfyUI's input or "
                                        "output folder, used when no dataset is connected."),
                io.String.Input("validation_prompt", default="", optional=True,
                                tooltip="Prompt of the validation videos; empty: the first clip's caption."),
                io.Image.Input("validation_image", optional=True,
                               tooltip="First frame of the validation videos; none: the first clip's first frame."),
                WorkersType.Input("workers", optional=True,
                                  tooltip="From Workers (DimensionX): every worker trains its share of each step's "
                                          "batch (N workers of batch_size B train what one process of batch N x B "
                                          "trains); the first writes the file. Their CFG/Ulysses settings are not "
                                          "used here. None: ComfyUI's process trains."),
            ],
            outputs=[io.String.Output(display_name="lora_name",
                                      tooltip="The file's name as Load Director LoRA lists it (refresh the page)."),
                     io.Image.Output(display_name="loss_curve", tooltip="Training loss, its moving average and the "
                                                                        "fixed-noise evaluation loss."),
                     io.Image.Output(display_name="validation", tooltip="The last validation video's frames."),
                     io.String.Output(display_name="report", tooltip="Steps, losses, time per step, notes.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, lora_name, kind, rank, alpha, learning_rate, steps, batch_size, optimizer,
                gradient_checkpointing, low_memory, checkpoint_every, eval_every, early_stop_patience,
                validation_steps, validation_inference_steps, seed, resume, overwrite, dataset=None,
                dataset_folder="", validation_prompt="", validation_image=None, workers=None) -> io.NodeOutput:
        if dataset is None:
            if not (dataset_folder or "").strip():
                raise ValueError("connect a dataset (Build Spatial Dataset / Curate Temporal Dataset) or give "
                                 "dataset_folder")
            dataset = open_dataset(host.input_or_output_folder(dataset_folder.strip(), "dataset_folder"))
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
        options = TrainOptions(kind=KINDS[kind], rank=rank, alpha=alpha, learning_rate=learning_rate, steps=steps,
                               batch_size=batch_size, seed=seed, optimizer=optimizer,
                               gradient_checkpointing=gradient_checkpointing, low_memory=low_memory,
                               checkpoint_every=checkpoint_every, eval_every=eval_every,
                               early_stop_patience=early_stop_patience,
                               validation_steps=parse_steps(validation_steps),
                               validation_inference_steps=validation_inference_steps)
        path, listed = host.new_model_file("loras", lora_name, ".safetensors", "lora_name", overwrite=overwrite)
        processes = 1 if workers is None else workers.size
        checkpoints = host.cache_folder("training") / training_run_id(model.parts, dataset, options, processes)
        image = None if validation_image is None else validation_image[0].clone()
        job = TrainingJob(dataset.folder, options, path, checkpoints, resume,
                          (validation_prompt or "").strip() or None, image)
        with host.fitting(steps, 0 if workers else TRAINING_MEMORY) as hooks, host.workers_lent(workers) as pool:
            result = run_training(model.parts, job, Runtime(place=model.place, offload=model.offload, hooks=hooks),
                                  pool, say=host.progress_text)
        stem = Path(listed).stem
        for step, frames in result.validations:
            video, _, _ = host.result_path(f"DimensionX/training/{stem}_step{step:05d}", "mp4")
            write_clip(Path(video), frames, float(FPS))
        curve = loss_curve(result.losses, result.evals, f"{listed}: {options.role}-Director")
        device = host.intermediate_device()
        return io.NodeOutput(listed, curve[None].to(device), result.validations[-1][1].to(device),
                             f"{result.describe()}\ncheckpoint: {checkpoints}")


NODES: list[type[io.ComfyNode]] = [TrainDirectorLoRA]
