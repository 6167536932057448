import pytest

from dimx_core.tiny import build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A freshly built tiny CogVideoX image-to-video folder, shared by the whole session."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_model_15_dir(tmp_path_factory):
    """A tiny CogVideoX 1.5 image-to-video folder (temporal patches, ofs, inverted latent scale)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny15") / "model", seed=0, version="1.5")


@pytest.fixture(scope="session")
def tiny_model_360_dir(tmp_path_factory, tiny_model_dir):
    """A tiny model in the 145-frame layout of DimensionX's 360-degree model, converted from a tiny SAT checkpoint
    (so it samples with SAT's solver by default, as the converter records)."""
    from tests.sat_writers import build_tiny_360_model

    return build_tiny_360_model(tmp_path_factory.mktemp("tiny360") / "model", tiny_model_dir)
