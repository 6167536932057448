"""A workflow run from the page's own Queue button, its result shown in the node."""
import pytest

from tests.browser.support import MODES


@pytest.mark.parametrize("mode", MODES)
def test_check_install_runs_from_the_queue_button_and_shows_its_report(browser, page_host, mode):
    result = browser("queue", mode, workflow="check_install", nodeCount=2)
    assert result["text"].startswith("DimensionX 0.1.0")
    assert "core SPLAT type: " in result["text"]
    assert str(page_host.base / "models" / "dimensionx") in result["text"]
    assert result["visible"], "the report is not visible in the node"
    assert result["errors"] == []
