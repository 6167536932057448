"""Every node the pack registers. The node tests check the extension lists exactly these; the host tests
check that a live ComfyUI shows exactly these. Some nodes exist only where the host offers what they need."""
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
    "DimensionXGaussianReconstruct",
    "DimensionXSaveGaussians",
    "DimensionXLoadGaussians",
    "DimensionXPreviewGaussians",
    "DimensionXGaussian4DReconstruct",
    "DimensionXConvertSATCheckpoint",
    "DimensionXBuildSpatialDataset",
    "DimensionXCurateTemporalDataset",
    "DimensionXTrainDirectorLoRA",
}
NEEDS_CORE_SPLAT = {"DimensionXGaussiansToSplat"}  # registered only on hosts with the core SPLAT type


def expected_nodes(core_splat: bool) -> set[str]:
    return EXPECTED_NODES | (NEEDS_CORE_SPLAT if core_splat else set())
