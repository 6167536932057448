"""Which directors are active at which denoising step, and how strongly.

Switch-Once (the DimensionX paper): the S-Director for the first k steps, where the spatial layout forms,
then the T-Director for the rest, in one run. It is one preset of a general schedule: step ranges, each with
the directors active in it. Steps no range covers run the base model alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Segment:
    start: int                              # first step, inclusive
    end: int                                # last step, exclusive
    directors: tuple[tuple[str, float | None], ...]  # (name, strength); None = the director's own strength


@dataclass(frozen=True)
class DirectorSchedule:
    steps: int
    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        covered = sorted((s.start, s.end) for s in self.segments)
        for start, end in covered:
            if not 0 <= start < end <= self.steps:
                raise ValueError(f"schedule range {start}-{end} is outside the run's steps 0-{self.steps}")
        for (_, end), (start, _) in zip(covered, covered[1:]):
            if start < end:
                raise ValueError(f"schedule ranges overlap at step {start}; give each step one set of directors")

    def active_at(self, step: int) -> tuple[tuple[str, float | None], ...]:
        for segment in self.segments:
            if segment.start <= step < segment.end:
                return segment.directors
        return ()

    def names(self) -> set[str]:
        return {name for segment in self.segments for name, _ in segment.directors}

    def describe(self) -> str:
        if not self.segments:
            return f"no director for all {self.steps} steps"
        parts = []
        for s in sorted(self.segments, key=lambda s: s.start):
            names = ", ".join(name if strength is None else f"{name}@{strength:g}" for name, strength in s.directors)
            parts.append(f"steps {s.start}-{s.end - 1}: {names}")
        return "; ".join(parts)


def constant(names: list[str], steps: int) -> DirectorSchedule:
    """Every given director active for the whole run (or none: plain image-to-video)."""
    if not names:
        return DirectorSchedule(steps, ())
    return DirectorSchedule(steps, (Segment(0, steps, tuple((n, None) for n in names)),))


def switch_once(spatial: str, temporal: str, switch_step: int, steps: int) -> DirectorSchedule:
    if not 0 <= switch_step <= steps:
        raise ValueError(f"switch_step must be between 0 and the number of steps ({steps}), got {switch_step}")
    segments = []
    if switch_step > 0:
        segments.append(Segment(0, switch_step, ((spatial, None),)))
    if switch_step < steps:
        segments.append(Segment(switch_step, steps, ((temporal, None),)))
    return DirectorSchedule(steps, tuple(segments))


_LINE = re.compile(r"^\s*(?:(?P<start>\d+(?:\.\d+)?%?)\s*-\s*(?P<end>\d+(?:\.\d+)?%?)\s*:)?\s*(?P<names>.*?)\s*$")
_ENTRY = re.compile(r"^(?P<name>[\w.\-]+)(?:@(?P<strength>-?\d+(?:\.\d+)?))?$")


def _step(text: str, steps: int) -> int:
    return round(float(text[:-1]) / 100 * steps) if text.endswith("%") else int(text)


def parse(text: str, steps: int, known: set[str]) -> DirectorSchedule:
    """One range per line, end exclusive, in steps or percent of the run; `#` starts a comment; a line without a
    range covers the whole run (so the Director Chooser's answer is a schedule):

        0-3: orbit_left
        6%-100%: motion@0.8, orbit_left@0.2
        orbit_left
    """
    segments = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)  # every line matches: the range is optional
        directors = []
        for entry in filter(None, (e.strip() for e in match["names"].split(","))):
            item = _ENTRY.match(entry)
            if not item and match["start"] is None:
                raise ValueError(f"schedule line {number} '{raw.strip()}' is not '[START-END:] name[@strength], ...'")
            if not item:
                raise ValueError(f"schedule line {number}: '{entry}' is not 'name' or 'name@strength'")
            if item["name"] not in known:
                raise ValueError(f"schedule line {number} names director '{item['name']}', but only "
                                 f"{sorted(known) or 'no directors'} are connected")
            directors.append((item["name"], None if item["strength"] is None else float(item["strength"])))
        start, end = (0, steps) if match["start"] is None else (_step(match["start"], steps),
                                                                _step(match["end"], steps))
        segments.append(Segment(start, end, tuple(directors)))
    return DirectorSchedule(steps, tuple(segments))
