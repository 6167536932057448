"""A real ComfyUI host for the pack's end-to-end tests and its demo (not shipped to users)."""
