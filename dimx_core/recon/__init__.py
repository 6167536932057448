"""Gaussian-splat scenes: the value (Gaussians), files (PLY, .splat), rasterizers (gsplat on CUDA, an exact
PyTorch reference everywhere), camera poses for generated frames, and the confidence-weighted 3DGS fit.

Submodules import torch and, on use, gsplat/pycolmap/OpenCV; import what you need from them directly.
"""
