"""Dimension-variant datasets (DimensionX, "Building Dimension-variant Dataset"): the data directors learn from.

- spatial.py: spatial-variant clips, rendered from Gaussian scenes along planned camera paths (S-Directors);
- temporal.py: temporal-variant clips, cut from the user's videos whose camera stands still (T-Directors);
- layout.py: the folder both write and the trainer reads (described there), which is also the layout common
  CogVideoX fine-tuning scripts read (prompts.txt + videos.txt).
"""
