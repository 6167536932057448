"""The viewer's JavaScript modules run in node against numpy references: the PLY decoder (any property order,
chunked streaming, SH degrees, the even thinning under a cap), the depth sort, and the checks on camera files,
4D manifests and trajectories. No browser needed."""
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.browser.scene_pack.scenes import SH_C0, write_ply

JS = Path(__file__).parent / "js"
BASE = ["x", "y", "z", "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
        "f_dc_0", "f_dc_1", "f_dc_2"]

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def node(script: str, *args: str) -> dict:
    done = subprocess.run(["node", str(JS / script), *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def random_splats(count: int, rest: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    columns = {name: rng.normal(size=count).astype(np.float32) for name in BASE}
    columns["opacity"] = rng.normal(0, 3, size=count).astype(np.float32)
    for name in ("scale_0", "scale_1", "scale_2"):
        columns[name] = rng.uniform(-5, 0, size=count).astype(np.float32)
    for i in range(rest):
        columns[f"f_rest_{i}"] = rng.normal(0, 0.3, size=count).astype(np.float32)
    return columns


def covariances(columns) -> np.ndarray:
    q = np.stack([columns[f"rot_{i}"] for i in range(4)], axis=1).astype(np.float64)
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    rotation = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1)], axis=1)
    scale = np.exp(np.stack([columns[f"scale_{i}"] for i in range(3)], axis=1).astype(np.float64))
    m = rotation * scale[:, None, :]
    sigma = m @ m.transpose(0, 2, 1)
    return sigma[:, [0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]]


def decoded(path: Path, chunk: int, cap: int | None = None):
    result = node("decode_ply.mjs", str(path), str(chunk), *([str(cap)] if cap else []))
    texels = np.array(result["texels"], dtype=np.uint32).reshape(-1, 12)
    return result, texels


@pytest.mark.parametrize("rest,degree", [(0, 0), (9, 1), (24, 2), (45, 3)])
def test_decoder_matches_numpy_for_every_sh_degree_and_odd_chunks(tmp_path, rest, degree):
    count = 37
    columns = random_splats(count, rest)
    # A shuffled property order and an extra double property: the decoder must follow the header.
    properties = ["nx", *reversed(BASE), "quality", *[f"f_rest_{i}" for i in range(rest)]]
    columns |= {"nx": np.zeros(count, np.float32), "quality": np.arange(count, dtype=np.float64)}
    path = write_ply(tmp_path / "s.ply", [columns], properties, doubles=frozenset({"quality"}))
    result, texels = decoded(path, chunk=97)
    assert result["done"] and result["loaded"] == count and result["progress"] > 10
    assert result["shDegree"] == degree
    floats = texels.view(np.float32)
    xyz = np.stack([columns[a] for a in "xyz"], axis=1)
    np.testing.assert_array_equal(floats[:, :3], xyz)
    np.testing.assert_allclose(floats[:, 4:10], covariances(columns), rtol=2e-5, atol=1e-9)
    rgba = texels[:, 3:4].view(np.uint8).reshape(-1, 4)
    dc = np.stack([columns[f"f_dc_{i}"] for i in range(3)], axis=1)
    np.testing.assert_allclose(rgba[:, :3], np.clip(np.round((0.5 + SH_C0 * dc) * 255), 0, 255), atol=1)
    np.testing.assert_allclose(rgba[:, 3], np.round(255 / (1 + np.exp(-columns["opacity"]))), atol=1)
    if degree == 0:
        assert result["sh"] is None
        return
    halves = np.array(result["sh"], dtype=np.uint32).view(np.float16).reshape(count, -1).astype(np.float64)
    per_channel = rest // 3
    expected = [dc] + [np.stack([columns[f"f_rest_{c * per_channel + k}"] for c in range(3)], axis=1)
                       for k in range(per_channel)]
    expected = np.concatenate(expected, axis=1)
    np.testing.assert_allclose(halves[:, :expected.shape[1]], expected, rtol=2e-3, atol=1e-4)


def test_a_capped_file_keeps_an_even_spread_of_exactly_the_cap(tmp_path):
    count, cap = 1000, 300
    columns = random_splats(count, 0)
    columns["x"] = np.arange(count, dtype=np.float32)  # x tells which vertex was kept
    result, texels = decoded(write_ply(tmp_path / "s.ply", [columns], BASE), chunk=4096, cap=cap)
    assert (result["count"], result["sourceCount"], result["loaded"]) == (cap, count, cap)
    kept = texels.view(np.float32)[:, 0].astype(int)
    expected = [i for i in range(count) if (i + 1) * cap // count > i * cap // count]
    assert kept.tolist() == expected
    assert np.diff(kept).max() <= -(-count // cap)


def test_depth_sort_orders_far_to_near_along_the_view():
    positions = np.random.default_rng(1).normal(size=(500, 3))
    forward = np.array([0.3, -0.2, 0.9]) / np.linalg.norm([0.3, -0.2, 0.9])
    order = node("sort_and_parse.mjs", json.dumps({"positions": positions.ravel().tolist(),
                                                  "forward": forward.tolist()}))["order"]
    assert sorted(order) == list(range(500))
    depths = positions[order] @ forward
    assert np.all(np.diff(depths) <= (depths.max() - depths.min()) / 65535 + 1e-9)


def test_file_checks_name_what_is_wrong():
    vertex = "element vertex 3\n" + "".join(f"property float {p}\n" for p in BASE)
    answer = node("sort_and_parse.mjs", json.dumps({
        "headers": [
            "ply\nformat binary_little_endian 1.0\n" + vertex + "end_header\n",
            "ply\nformat ascii 1.0\n" + vertex + "end_header\n",
            "ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nend_header\n",
            "ply\nformat binary_little_endian 1.0\nelement face 2\nproperty uchar a\nproperty float b\n" + vertex +
            "end_header\n",
        ],
        "manifests": [{"kind": "dimx-4d", "times": [0, 1], "frames": [{"filename": "a.ply"}, {"filename": "b.ply"}]},
                      {"kind": "dimx-4d", "times": [0], "frames": [{"filename": "a.ply"}, {"filename": "b.ply"}]},
                      {"kind": "other"}],
        "transforms": [{"w": 8, "h": 6, "fl_x": 5, "fl_y": 5, "cx": 4, "cy": 3,
                        "frames": [{"transform_matrix": np.eye(4).tolist()}]},
                       {"frames": [{"transform_matrix": np.eye(4).tolist()}]}],
        "trajectories": [{"c2w_opencv": [np.eye(4).tolist()] * 2, "intrinsics": [np.eye(3).tolist()] * 2},
                         {"c2w_opencv": [np.eye(4).tolist()], "intrinsics": []}],
    }))
    good, ascii_format, missing, face_first = answer["headers"]
    assert good["ok"]["vertexCount"] == 3 and good["ok"]["stride"] == 4 * len(BASE)
    assert "binary_little_endian" in ascii_format["error"]
    assert "f_dc_0" in missing["error"] and "opacity" in missing["error"]
    assert face_first["ok"]["dataOffset"] == len(("ply\nformat binary_little_endian 1.0\nelement face 2\n"
                                                   "property uchar a\nproperty float b\n" + vertex +
                                                   "end_header\n").encode()) + 2 * 5
    assert "ok" in answer["manifests"][0]
    assert "same, non-zero length" in answer["manifests"][1]["error"]
    assert "dimx-4d" in answer["manifests"][2]["error"]
    assert answer["transforms"][0] == {"ok": 1}
    assert "fl_x" in answer["transforms"][1]["error"]
    assert answer["trajectories"][0] == {"ok": 2}
    assert "same length" in answer["trajectories"][1]["error"]
