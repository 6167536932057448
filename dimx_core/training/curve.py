"""The loss curve as an image (what the Train Director LoRA node shows): training loss, its moving average and
the fixed-noise evaluation loss, against the step, on a log scale."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 640, 360, 48
RAW, SMOOTH, EVAL, AXES = (170, 190, 230), (30, 80, 200), (220, 90, 30), (60, 60, 60)


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for index, value in enumerate(values):
        total += value - (values[index - window] if index >= window else 0.0)
        out.append(total / min(index + 1, window))
    return out


def loss_curve(losses: list[tuple[int, float]], evals: list[tuple[int, float]], title: str) -> torch.Tensor:
    """(H, W, 3) float image in 0..1."""
    picture = Image.new("RGB", (WIDTH, HEIGHT), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    draw.text((MARGIN, 8), title, fill=AXES)
    points = [v for _, v in losses] + [v for _, v in evals]
    points = [v for v in points if v > 0 and math.isfinite(v)]
    if not points:
        draw.text((MARGIN, HEIGHT // 2), "no steps yet", fill=AXES)
        return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)
    last = max([s for s, _ in losses] + [s for s, _ in evals] + [1])
    low, high = math.log10(min(points)), math.log10(max(points))
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5

    def xy(step: float, value: float) -> tuple[float, float]:
        x = MARGIN + (WIDTH - 2 * MARGIN) * step / last
        y = HEIGHT - MARGIN - (HEIGHT - 2 * MARGIN) * (math.log10(max(value, 1e-12)) - low) / (high - low)
        return x, y

    draw.line([(MARGIN, MARGIN), (MARGIN, HEIGHT - MARGIN), (WIDTH - MARGIN, HEIGHT - MARGIN)], fill=AXES)
    draw.text((MARGIN - 40, MARGIN - 6), f"{10 ** high:.3g}", fill=AXES)
    draw.text((MARGIN - 40, HEIGHT - MARGIN - 6), f"{10 ** low:.3g}", fill=AXES)
    draw.text((WIDTH - MARGIN - 30, HEIGHT - MARGIN + 6), f"step {last}", fill=AXES)
    steps = [s for s, _ in losses]
    for series, colour, width in (([v for _, v in losses], RAW, 1),
                                  (moving_average([v for _, v in losses], 50), SMOOTH, 2)):
        if len(series) > 1:
            draw.line([xy(s, v) for s, v in zip(steps, series)], fill=colour, width=width)
    if evals:
        line = [xy(s, v) for s, v in evals]
        if len(line) > 1:
            draw.line(line, fill=EVAL, width=2)
        for x, y in line:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=EVAL)
    legend = [("loss", RAW), ("moving average", SMOOTH), ("fixed-noise evaluation", EVAL)]
    for index, (name, colour) in enumerate(legend):
        x = WIDTH - MARGIN - 170
        y = MARGIN + 4 + 14 * index
        draw.line([(x, y + 6), (x + 18, y + 6)], fill=colour, width=2)
        draw.text((x + 24, y), name, fill=AXES)
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0)
