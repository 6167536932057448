"""The pack's own ComfyUI socket types (see DESIGN.md, "Data that flows between nodes"). Named `*Type` so they never
shadow the library's classes they carry (dimx_core.camera.Trajectory, dimx_core.recon Gaussians, ...)."""
from comfy_api.latest import io

VideoModelType = io.Custom("DIMX_VIDEO_MODEL")          # loaded CogVideoX image-to-video parts
DirectorsType = io.Custom("DIMX_DIRECTORS")             # named director LoRAs, resident together
TrajectoryType = io.Custom("DIMX_TRAJECTORY")           # dimx_core.camera.Trajectory
SpeedType = io.Custom("DIMX_SPEED")                     # dimx_core.speed.options.SpeedOptions
GaussiansType = io.Custom("DIMX_GAUSSIANS")             # dimx_core.recon Gaussians (optionally deformable, 4D)
IdentityGuideType = io.Custom("DIMX_IDENTITY_GUIDE")    # dimx_core.identity.latents.IdentityGuide
DatasetType = io.Custom("DIMX_DATASET")                 # dimx_core.datasets.layout.Dataset (a dataset folder)
