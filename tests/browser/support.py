"""What the browser tests share: the rendering modes, the example workflows, and which console errors are the
pack's."""
from harness.comfyhost import REPO

MODES = ["classic", "vue"]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))


def ours(errors: list[dict]) -> list[dict]:
    """Console errors that come from this pack (its extension files or its messages)."""
    def mentions_pack(error: dict) -> bool:
        text = (error.get("where", "") + " " + error["text"]).lower()
        return "/extensions/dimensionx" in text or "dimensionx" in text or "dimx" in text
    return [e for e in errors if mentions_pack(e)]
