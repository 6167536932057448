"""The 4D benchmark's cost model of the image -> 4D graph counts the steps each node runs."""
import importlib.util

from harness.comfyhost import REPO


def bench_module():
    spec = importlib.util.spec_from_file_location("recon4d_bench", REPO / "bench" / "recon4d_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_graph_cost_counts_guided_starts_and_both_refinement_passes():
    rows = bench_module().graph_cost(2.0, 10.0, 60.0, times=3, views=4)
    assert [(runs, steps) for _, runs, steps, _ in rows] == [
        (1, 50), (1, 50),           # T-Director video, v_ref: full schedules
        (3, 135),                   # 3 per-frame videos from the guide at strength 0.9: 45 steps each
        (8, 148),                   # 4 cameras x (25 steps at 0.5 + 12 at 0.25)
        (0, 0), (13, 383)]          # the measured fit, the total
    seconds = [value for _, _, _, value in rows]
    assert seconds[2] == 3 * (45 * 2.0 + 10.0) and seconds[3] == 4 * (37 * 2.0 + 2 * 10.0)
    assert seconds[-1] == sum(seconds[:-1]) and seconds[4] == 60.0
