"""DimensionX core library: CogVideoX director video, camera trajectories and Gaussian splats.

Never imports ComfyUI; the nodes in ../nodes adapt it. Submodules are imported on use so that
`import dimx_core` stays cheap.
"""
__version__ = "0.1.0"
