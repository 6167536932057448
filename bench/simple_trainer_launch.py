"""Runs gsplat's examples/simple_trainer.py (copied into bench/work/ by recon_bench.py from a checkout given on its
command line; never committed) on a machine without network access.

Two things are replaced, nothing else: torchmetrics' LPIPS metric, whose AlexNet/VGG backbone torchvision would
download, reports NaN (its eval's LPIPS column is empty); and the viewer's modules (viser, nerfview and the examples'
gsplat_viewer), which simple_trainer imports at the top but never calls with --disable_viewer, are empty modules, so
viser's web stack need not travel to the device. Run with simple_trainer's own arguments:
`python simple_trainer_launch.py default --disable_viewer --data_dir ... --max_steps ...`.
"""
import runpy
import sys
import types

import torch
import torchmetrics.image.lpip

if "--disable_viewer" not in sys.argv:
    raise SystemExit("simple_trainer_launch.py runs simple_trainer without its viewer: pass --disable_viewer")


class LpipsNotMeasured(torch.nn.Module):
    """Stands in for LearnedPerceptualImagePatchSimilarity: NaN for every pair (no weights here to measure it)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float("nan"), device=prediction.device)


def viewer_module(name: str, *names: str) -> types.ModuleType:
    """A module with the names simple_trainer imports from it, each an empty class (used only in annotations)."""
    module = types.ModuleType(name, f"{name}: not loaded (simple_trainer runs with --disable_viewer)")
    for attribute in names:
        setattr(module, attribute, type(attribute, (), {}))
    return module


torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity = LpipsNotMeasured
for module in (viewer_module("viser", "ViserServer"),
               viewer_module("nerfview", "CameraState", "RenderTabState", "apply_float_colormap"),
               viewer_module("gsplat_viewer", "GsplatViewer", "GsplatRenderTabState")):
    sys.modules.setdefault(module.__name__, module)
sys.argv = ["simple_trainer.py", *sys.argv[1:]]
sys.path.insert(0, ".")
runpy.run_path("simple_trainer.py", run_name="__main__")
