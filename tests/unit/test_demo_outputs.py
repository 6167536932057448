"""The demo says where every output landed: files, first lines of texts, and the splat scenes the viewer shows."""
from pathlib import Path

from harness.demo import describe_outputs


def test_files_texts_and_scenes_are_listed_with_their_folders():
    output = Path("/instance/output")
    outputs = {
        "3": {"images": [{"filename": "a.png", "subfolder": "", "type": "temp"}]},
        "5": {"dimx_scene": [{"scene": {"filename": "scene.dimx4d.json", "subfolder": "DimensionX/s_00001_",
                                        "type": "output"}, "cameras": None, "kind": "4d"}],
              "text": ["first line\nsecond line"]},
    }
    assert describe_outputs(outputs, output) == [
        "  node 3 images: /instance/temp/a.png",
        "  node 5 4d scene: /instance/output/DimensionX/s_00001_/scene.dimx4d.json",
        "  node 5 text: first line ...",
    ]
