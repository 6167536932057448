"""Whole graphs without ComfyUI: image -> 4D scene."""
