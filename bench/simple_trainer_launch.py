"""Runs gsplat's examples/simple_trainer.py (copied into bench/work/ by recon_bench.py from a checkout given on its
command line; never committed) on a machine without network access.

Its Runner builds torchmetrics' LPIPS metric, whose AlexNet/VGG backbone torchvision would download; the metric is
replaced by one that reports NaN, so its eval's LPIPS column is empty. Everything else is simple_trainer's own code,
run with the arguments given here: `python simple_trainer_launch.py default --data_dir ... --max_steps ...`.
"""
import runpy
import sys

import torch
import torchmetrics.image.lpip


class LpipsNotMeasured(torch.nn.Module):
    """Stands in for LearnedPerceptualImagePatchSimilarity: NaN for every pair (no weights here to measure it)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float("nan"), device=prediction.device)


torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity = LpipsNotMeasured
sys.argv = ["simple_trainer.py", *sys.argv[1:]]
sys.path.insert(0, ".")
runpy.run_path("simple_trainer.py", run_name="__main__")
