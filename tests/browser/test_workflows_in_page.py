"""Every example workflow, as a person meets it: listed in the template browser with its thumbnail, opened by
clicking it, with every node known, every widget value accepted, and a quiet console."""
import io
import json
import urllib.request

import pytest
from PIL import Image

from harness.comfyhost import PACK_DIR_NAME
from harness.workflows import load_workflow
from tests.browser.support import WORKFLOWS, ours

NOTE_TYPES = {"MarkdownNote", "Note"}


def fetch(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url) as response:
        return response.headers.get("Content-Type", ""), response.read()


def test_every_workflow_is_a_template_with_a_jpg_thumbnail(page_host):
    listed = json.loads(fetch(page_host.url + "/workflow_templates")[1])
    assert sorted(listed.get(PACK_DIR_NAME, [])) == [path.stem for path in WORKFLOWS]
    for path in WORKFLOWS:
        thumbnail = path.with_suffix(".jpg")
        assert thumbnail.is_file(), f"{thumbnail.name} is missing: run python -m harness.thumbnails"
        kind, body = fetch(f"{page_host.url}/api/workflow_templates/{PACK_DIR_NAME}/{thumbnail.name}")
        image = Image.open(io.BytesIO(body))
        assert kind == "image/jpeg" and image.format == "JPEG" and min(image.size) >= 256


MODEL_LOADERS = {"DimensionXLoadVideoModel", "DimensionXLoadDirectorLoRA"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_every_workflow_tells_the_user_what_to_choose(path):
    notes = [node for node in load_workflow(path)["nodes"] if node["type"] in NOTE_TYPES]
    assert notes, f"{path.name} has no MarkdownNote for the user"
    text = "\n".join(str(value) for note in notes for value in note.get("widgets_values", []))
    if any(node["type"] in MODEL_LOADERS for node in load_workflow(path)["nodes"]):
        assert "models/" in text, f"the notes of {path.name} do not say which model folders/files to use"


def test_every_workflow_opens_from_the_template_browser_cleanly(workflow_tour):
    result = workflow_tour
    assert ours(result["bootErrors"]) == [], "the pack's extension logged errors while the page started"
    for path, seen in zip(WORKFLOWS, result["results"]):
        assert seen["name"] == path.stem
        assert seen["types"] == sorted(node["type"] for node in load_workflow(path)["nodes"])
        assert seen["missing"] == [] and seen["missingDialogs"] == [], f"{path.name}: missing node types"
        assert seen["badValues"] == [], f"{path.name}: widget values the page refuses"
        assert seen["errors"] == [], f"{path.name}: console errors while loading"
        assert [r["status"] for r in seen["thumbnailRequests"]] == [200], f"{path.name}: thumbnail not fetched"
        assert any(t["width"] > 0 for t in seen["thumbnails"]), f"{path.name}: the template card shows no thumbnail"
