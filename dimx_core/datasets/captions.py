"""Captions from templates (no captioning model can be downloaded): one template per pattern, or one for all.

Template text, one line per template:

    orbit_left: a {scene}, the camera circles it to the left
    *: a {scene}, {motion}

A line starts with a known name and a colon to apply to that name only; `*:` (or a text with no such line at
all) applies to every other. Placeholders in braces are filled per clip ({pattern}, {motion}, {scene},
{magnitude} for spatial clips; {video}, {caption} for temporal ones).
"""
from __future__ import annotations

import string

ANY = "*"


def parse_templates(text: str, names: tuple[str, ...], default: str) -> dict[str, str]:
    """name -> template ("*" -> the template for every other name)."""
    templates: dict[str, str] = {}
    loose = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        head, colon, rest = line.partition(":")
        if colon and head.strip() in (*names, ANY):
            templates[head.strip()] = rest.strip()
        else:
            loose.append(line.strip())
    if loose:
        if ANY in templates:
            raise ValueError(f"caption templates: the line '{loose[0]}' names no pattern, and '*:' is given too; "
                             f"start each line with one of {', '.join(names)} or '*' and a colon")
        templates[ANY] = " ".join(loose)
    templates.setdefault(ANY, default)
    for name, template in templates.items():
        if not template:
            raise ValueError(f"caption template for '{name}' is empty")
    return templates


def caption(templates: dict[str, str], name: str, fields: dict) -> str:
    template = templates.get(name, templates[ANY])
    unknown = [field for _, field, _, _ in string.Formatter().parse(template) if field and field not in fields]
    if unknown:
        raise ValueError(f"caption template '{template}' uses {{{unknown[0]}}}; the placeholders are "
                         + ", ".join(f"{{{key}}}" for key in fields))
    return " ".join(template.format_map(fields).split())
