"""A folder result appears whole or not at all (files.atomic_folder)."""
import pytest

from dimx_core.files import atomic_folder


def test_folder_gets_its_name_only_when_the_block_finishes(tmp_path):
    with atomic_folder(tmp_path / "model") as partial:
        (partial / "weights.bin").write_bytes(b"123")
        assert partial.name.startswith(".model.") and not (tmp_path / "model").exists()
    assert (tmp_path / "model" / "weights.bin").read_bytes() == b"123"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_a_failure_leaves_nothing_and_an_existing_folder_is_refused_untouched(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_folder(tmp_path / "model") as partial:
            (partial / "half.bin").write_bytes(b"1")
            (partial / "link").symlink_to(tmp_path)  # removed as a link, never followed
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine").write_text("keep")
    with pytest.raises(FileExistsError, match="already exists"):
        with atomic_folder(tmp_path / "model"):
            pass
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["mine"]
