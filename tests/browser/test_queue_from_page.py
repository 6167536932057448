"""A workflow run from the page's own Run (Queue) button, its result shown in the node (both rendering modes)."""


def test_check_install_runs_from_the_queue_button_and_shows_its_report(workflow_tour, page_host):
    run = workflow_tour["run"]
    assert run is not None, "check_install was not among the workflows"
    assert run["text"].startswith("DimensionX 0.1.0")
    assert "core SPLAT type: " in run["text"]
    assert str(page_host.base / "models" / "dimensionx") in run["text"]
    assert run["visible"], "the report is not visible in the node"
    assert run["errors"] == []
