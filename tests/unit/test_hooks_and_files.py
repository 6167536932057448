import pytest

from dimx_core.files import atomic_path
from dimx_core.hooks import Hooks, Interrupted


def test_step_reports_then_stops_when_asked():
    seen, stop = [], {"now": False}
    hooks = Hooks(progress=lambda s, t, p: seen.append((s, t)), should_stop=lambda: stop["now"])
    hooks.step(1, 3)
    stop["now"] = True
    with pytest.raises(Interrupted):
        hooks.step(2, 3)
    assert seen == [(1, 3), (2, 3)]


def test_atomic_path_publishes_only_finished_files(tmp_path):
    target = tmp_path / "out" / "scene.ply"
    with atomic_path(target) as part:
        part.write_bytes(b"done")
        assert not target.exists()
    assert target.read_bytes() == b"done"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as part:
            part.write_bytes(b"half")
            raise RuntimeError("cancelled")
    assert target.read_bytes() == b"done"
    assert [p.name for p in target.parent.iterdir()] == ["scene.ply"]
