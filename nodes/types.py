"""The pack's own ComfyUI socket types (see DESIGN.md, "Data that flows between nodes")."""
from comfy_api.latest import io

VideoModel = io.Custom("DIMX_VIDEO_MODEL")      # loaded CogVideoX image-to-video parts
Directors = io.Custom("DIMX_DIRECTORS")         # named director LoRAs, resident together
Trajectory = io.Custom("DIMX_TRAJECTORY")       # dimx_core.camera.Trajectory
Speed = io.Custom("DIMX_SPEED")                 # dimx_core.speed.options.SpeedOptions
Gaussians = io.Custom("DIMX_GAUSSIANS")         # dimx_core.recon Gaussians (optionally with a deformation field)
IdentityGuide = io.Custom("DIMX_IDENTITY_GUIDE")  # dimx_core.identity.latents.IdentityGuide
Dataset = io.Custom("DIMX_DATASET")             # dimx_core.datasets.layout.Dataset (a dataset folder)
