"""Every DimensionX node's help page (js/docs/<NodeId>.md) shows in the frontend's help panel when a person
clicks the node and its (i) button, on both rendering modes."""
import json
import re
import urllib.request

import pytest

from harness.comfyhost import REPO
from tests.browser.support import MODES

DOCS = REPO / "js" / "docs"
# The frontend asks for docs/<NodeId>/<locale>.md first and falls back to docs/<NodeId>.md, which the pack
# provides; the first request's 404 is logged by the browser. Anything else in the console fails the test.
LOCALE_PROBE = re.compile(r"/extensions/[^/]+/docs/DimensionX\w+/[a-z]{2}(-[A-Za-z]+)?\.md$")


def first_sentence(node_id: str) -> str:
    """The opening words of the help page's first paragraph, as the rendered page shows them."""
    text = (DOCS / f"{node_id}.md").read_text(encoding="utf-8")
    paragraph = next(block for block in text.split("\n\n") if block.strip() and not block.startswith("#"))
    # markdown marks away; an underscore inside a word (LOAD3D_CAMERA) is text, not emphasis
    plain = re.sub(r"[*`]|(?<!\w)_|_(?!\w)|\[([^\]]*)\]\([^)]*\)", r"\1", " ".join(paragraph.split()))
    return plain[:60]


@pytest.mark.parametrize("mode", MODES)
def test_help_page_of_every_dimensionx_node_shows_in_the_page(browser, page_host, mode):
    with urllib.request.urlopen(page_host.url + "/object_info") as response:
        node_ids = sorted(name for name in json.load(response) if name.startswith("DimensionX"))
    nodes = [{"id": node_id, "expect": first_sentence(node_id)} for node_id in node_ids]
    result = browser("help", mode, nodes=nodes, timeout=60 + 15 * len(nodes))
    assert [r["id"] for r in result["results"] if not r["shown"]] == []
    assert [e for e in result["errors"] if not LOCALE_PROBE.search(e.get("where", ""))] == []
