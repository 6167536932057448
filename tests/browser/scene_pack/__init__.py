"""Test-only ComfyUI pack for the browser tests: a node that writes a splat scene with known content and reports
it in its result as `dimx_scene`, exactly as the DimensionX save/preview Gaussians nodes do. The viewer
extension must attach to it although it is not a DimensionX node."""
import json
import os
from pathlib import Path

from . import scenes

SUBFOLDER = "dimx_test"


def _ref(path):
    return {"filename": os.path.basename(path), "subfolder": SUBFOLDER, "type": "output"}


class DimxTestSceneSource:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "kind": (["3d", "4d", "missing"], {"tooltip": "3d: one PLY; 4d: a manifest of two time steps with swapped "
                                                       "colours; missing: a scene file that does not exist"}),
            "cameras": ("BOOLEAN", {"default": False, "tooltip": "also write a transforms.json camera arc"}),
            "splats_per_cluster": ("INT", {"default": 400, "min": 1, "max": 1_000_000}),
        }}

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    CATEGORY = "testing/dimx"

    def run(self, kind, cameras, splats_per_cluster):
        import folder_paths  # ComfyUI's; imported here so that the tests can import .scenes on their own

        folder = os.path.join(folder_paths.get_output_directory(), SUBFOLDER)
        os.makedirs(folder, exist_ok=True)
        tag = f"{kind}_{splats_per_cluster}"
        camera_ref = None
        if cameras:
            camera_ref = _ref(scenes.camera_arc(Path(folder) / f"cameras_{tag}.json"))
        if kind == "missing":
            scene_ref = {"filename": "no_such_scene.ply", "subfolder": SUBFOLDER, "type": "output"}
        elif kind == "3d":
            scene_ref = _ref(scenes.two_clusters(Path(folder) / f"scene_{tag}.ply", splats_per_cluster))
        else:
            frames = [_ref(scenes.two_clusters(Path(folder) / f"scene_{tag}_t{t}.ply", splats_per_cluster,
                                               swapped=bool(t))) for t in (0, 1)]
            manifest = os.path.join(folder, f"scene_{tag}.json")
            with open(manifest, "w") as handle:
                json.dump({"kind": "dimx-4d", "times": [0.0, 1.0], "frames": frames}, handle)
            scene_ref = _ref(manifest)
        reported = "3d" if kind == "missing" else kind
        return {"ui": {"dimx_scene": [{"scene": scene_ref, "cameras": camera_ref, "kind": reported}]}, "result": ()}


NODE_CLASS_MAPPINGS = {"DimxTestSceneSource": DimxTestSceneSource}
NODE_DISPLAY_NAME_MAPPINGS = {"DimxTestSceneSource": "Test scene source (DimensionX browser tests)"}
