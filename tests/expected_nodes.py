"""Every node the pack registers. The node tests check the extension lists exactly these; the host tests
check that a live ComfyUI shows exactly these."""
EXPECTED_NODES = {
    "DimensionXPackInfo",
    "DimensionXLoadVideoModel",
    "DimensionXLoadDirectorLoRA",
    "DimensionXDirectorSampler",
    "DimensionXSwitchOnceSampler",
    "DimensionXSpeedOptions",
    "DimensionXArticulatedVideo",
    "DimensionXSelectReferenceFrame",
    "DimensionXReferenceLatentShare",
    "DimensionXMultiViewGenerate",
    "DimensionXAppearanceRefine",
    "DimensionXTrajectoryPlanner",
    "DimensionXArticulatedPathPlanner",
    "DimensionXDirectorChooser",
    "DimensionXTrajectoryExport",
    "DimensionXTrajectoryLoad",
    "DimensionXTrajectoryToLoad3DCamera",   # where the host has LOAD3D_CAMERA (every supported ComfyUI does)
    "DimensionXLoad3DCamerasToViews",       # same
}
