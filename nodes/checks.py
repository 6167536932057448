"""One check of the widget values a prompt carries, for every node of the pack, on every host.

ComfyUI 0.3.75 checks combo values only for V1 list types, so a V3 combo takes any value an API client sends
(`precision: "fp64"`); no host refuses NaN for a FLOAT (NaN passes every `<` and `>`). Each node of the pack
gets one `validate_inputs` that checks every constant against the node's own schema, freshly built (file lists
change while the server runs). A node with `validate_inputs(**kwargs)` owns the validation of its widgets, so
hosts skip their own range and combo checks for it: ranges are checked here too. Linked values are not known
before the run; the library checks those where it uses them.
"""
from __future__ import annotations

import math

from comfy_api.latest import io

SHOWN_OPTIONS = 12


def _options_text(options: list) -> str:
    shown = ", ".join(map(repr, options[:SHOWN_OPTIONS]))
    return shown + (f" ... ({len(options)} in all)" if len(options) > SHOWN_OPTIONS else "")


def _range_problem(item, value) -> str | None:
    low, high = getattr(item, "min", None), getattr(item, "max", None)
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{item.id} must be between {low:g} and {high:g}, got {value:g}"
    return None


def value_problem(item, value) -> str | None:
    """What is wrong with a widget's constant value, or None. `value` None is a linked input (not known yet)."""
    if value is None:
        return None
    if isinstance(item, io.Combo.Input):
        if value not in (item.options or []):
            return f"{item.id}: {value!r} is not one of its options ({_options_text(item.options or [])})"
    elif isinstance(item, io.Float.Input):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{item.id} must be a finite number, got {value!r}"
        return _range_problem(item, value)
    elif isinstance(item, io.Int.Input):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{item.id} must be a whole number, got {value!r}"
        return _range_problem(item, value)
    elif isinstance(item, io.String.Input):
        if not isinstance(value, str):
            return f"{item.id} must be text, got {type(value).__name__}"
        if "\x00" in value:
            return f"{item.id} contains a NUL character (\\x00); remove it"
    return None


def widget_problems(node: type[io.ComfyNode], values: dict) -> list[str]:
    return [problem for item in node.define_schema().inputs if item.id in values
            if (problem := value_problem(item, values[item.id])) is not None]


def with_value_checks(node: type[io.ComfyNode]) -> type[io.ComfyNode]:
    """`node` as the host should list it: the same node, whose prompt values are checked before it runs."""

    def validate_inputs(cls, **values) -> bool | str:
        problems = widget_problems(cls, values)
        return "; ".join(problems) if problems else True

    return type(node.__name__, (node,), {"__doc__": node.__doc__, "__module__": node.__module__,
                                         "__qualname__": node.__qualname__,
                                         "validate_inputs": classmethod(validate_inputs)})
