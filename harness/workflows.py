"""Turn a UI-format workflow (what the ComfyUI page saves and loads) into the API prompt the server runs.

The page does this in JavaScript when a person presses Queue; the demo and host tests need the same
conversion without a browser. Widget values are matched to inputs in the order /object_info gives.
"""
from __future__ import annotations

import json
from pathlib import Path

FRONTEND_ONLY = {"Note", "MarkdownNote"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO",
                "LOAD_3D"}  # the 3D viewport's state (core's splat/3D save and preview nodes): a widget value too
MUTED, BYPASSED = 2, 4


def _is_widget(spec: list) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _extra_widget_values(name: str, spec: list) -> int:
    """Widgets the page adds after an input's own value (seed control, image upload button)."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    seed_like = spec[0] == "INT" and name in ("seed", "noise_seed")
    return int(bool(options.get("control_after_generate") or seed_like)) + int(bool(options.get("image_upload")))


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = {link[0]: link for link in workflow.get("links", [])}  # id, src, src_slot, dst, dst_slot, type

    def source(link_id: int) -> list:
        _, src, slot, *_ = links[link_id]
        node = nodes[src]
        if node["type"] == "Reroute":
            return source(node["inputs"][0]["link"])
        return [str(src), slot]

    prompt = {}
    for node in workflow["nodes"]:
        kind = node["type"]
        if kind in FRONTEND_ONLY or kind == "Reroute" or node.get("mode") == MUTED:
            continue
        if node.get("mode") == BYPASSED:
            raise ValueError(f"node {node['id']} ({kind}) is bypassed; the converter does not support bypass")
        if kind not in object_info:
            raise ValueError(f"node {node['id']} has type {kind!r}, which this ComfyUI does not know")
        info = object_info[kind]
        specs = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        order = info.get("input_order", {})
        names = order.get("required", []) + order.get("optional", []) or list(specs)
        inputs = {}
        values = list(node.get("widgets_values") or [])
        for name in names:
            if name in specs and _is_widget(specs[name]) and values:
                inputs[name] = values.pop(0)
                del values[:_extra_widget_values(name, specs[name])]
        for slot in node.get("inputs", []):
            if slot.get("link") is not None:
                inputs[slot["name"]] = source(slot["link"])
        prompt[str(node["id"])] = {"class_type": kind, "inputs": inputs}
    return prompt


def missing_node_types(workflow: dict, object_info: dict) -> list[str]:
    """Node types of `workflow` this ComfyUI does not have (e.g. core nodes of a newer release)."""
    return sorted({node["type"] for node in workflow["nodes"]} - set(object_info) - FRONTEND_ONLY - {"Reroute"})


def _choices(spec: list) -> list | None:
    """A combo input's options, in either form /object_info gives (a list, or COMBO with an options list)."""
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1].get("options")
    return None


def unavailable_choices(prompt: dict, object_info: dict) -> list[tuple[str, str, str]]:
    """(node type, input, value) of every combo value in `prompt` this ComfyUI does not offer, such as a model
    file its folders do not hold."""
    missing = []
    for node in prompt.values():
        info = object_info[node["class_type"]]["input"]
        specs = {**info.get("required", {}), **info.get("optional", {})}
        for name, value in node["inputs"].items():
            options = _choices(specs[name]) if name in specs else None
            if options is not None and isinstance(value, str) and value not in options:
                missing.append((node["class_type"], name, value))
    return missing


def load_workflow(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
