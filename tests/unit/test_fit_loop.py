"""The one fit loop (fit.py) that the 3D and 4D fits share: gsplat's order (densify after the optimisers' step),
the view order and the strategy fields of the preset (VIEW_ORDERS, STRATEGIES)."""
import dataclasses

import pytest
import torch

from dimx_core.recon.fit import STRATEGIES, VIEW_ORDERS, EpochOrder, StrategyKind
from dimx_core.recon.train import PRESETS, ReconstructOptions, reconstruct
from dimx_core.recon.train4d import Reconstruct4DOptions, reconstruct_4d
from tests.unit.recon_scenes import one_thread, orbit_frames  # noqa: F401 (autouse fixture)
from tests.unit.test_recon_4d import TIMES, VIEWS, moving_scene

TINY = dict(preset="fast", poses="trajectory", confidence="none", initial_points=60)


def test_every_epoch_visits_each_view_once_reshuffled_or_in_one_order_repeated():
    reshuffled = VIEW_ORDERS["reshuffle"](list(range(10)), torch.Generator().manual_seed(0))
    cycled = VIEW_ORDERS["cycle"](list(range(10)), torch.Generator().manual_seed(0))
    epochs = [[reshuffled.next() for _ in range(10)] for _ in range(3)]
    repeated = [[cycled.next() for _ in range(10)] for _ in range(3)]
    assert all(sorted(epoch) == list(range(10)) for epoch in epochs + repeated)
    assert epochs[0] != epochs[1] != epochs[2]
    assert repeated[0] == repeated[1] == repeated[2] == epochs[0]  # the same seed draws the same first order
    with pytest.raises(ValueError, match="every frame is held out"):
        EpochOrder([], torch.Generator())
    frames, trajectory = orbit_frames(64, 48, 16)
    with pytest.raises(ValueError, match="view_order must be one of reshuffle, cycle"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(PRESETS, "fast", dataclasses.replace(PRESETS["fast"], view_order="random"))
            reconstruct(frames, trajectory, ReconstructOptions(**TINY, steps=2))


@pytest.mark.parametrize("cameras, scale2d", [(1, True), (2, False)])
def test_sync_free_densification_statistics_equal_gsplats(cameras, scale2d):
    """The default strategy's per-step statistics, summed densely over (C, N) instead of gsplat's torch.where and
    scatter: the same gradient sums, visibility counts and (one camera a step, as the fit renders) screen radii.
    With several cameras gsplat's radii keep the last camera's write where the dense form keeps the maximum."""
    from gsplat.strategy import DefaultStrategy

    from dimx_core.recon.densify import SyncFreeDefaultStrategy

    generator = torch.Generator().manual_seed(cameras)
    count = 300
    params = {"means": torch.zeros(count, 3)}
    options = dict(refine_scale2d_stop_iter=1000 if scale2d else 0)
    theirs, ours = DefaultStrategy(**options), SyncFreeDefaultStrategy(**options)
    states = [strategy.initialize_state(scene_scale=1.0) for strategy in (theirs, ours)]
    for _ in range(3):
        means2d = torch.zeros(cameras, count, 2, requires_grad=True)
        (means2d * torch.randn(cameras, count, 2, generator=generator)).sum().backward()
        radii = torch.randint(0, 6, (cameras, count, 2), generator=generator, dtype=torch.int32)
        radii[:, :50] = 0  # never on screen
        info = {"width": 64, "height": 48, "n_cameras": cameras, "radii": radii, "gaussian_ids": None,
                "means2d": means2d}
        for strategy, state in zip((theirs, ours), states):
            strategy._update_state(params, state, info, packed=False)
    for key in ("grad2d", "count") + (("radii",) if scale2d else ()):
        assert torch.allclose(states[1][key], states[0][key], rtol=1e-6, atol=1e-7), key
    assert (states[0]["count"][:50] == 0).all() and (states[0]["count"][50:] > 0).float().mean() > 0.9


@pytest.mark.parametrize("four_d", [False, True])
def test_densification_runs_after_every_optimiser_has_stepped(monkeypatch, four_d):
    """At each post-backward call, every Adam has already taken this step's update (gsplat's trainer order), and
    the strategy sees the screen-space gradients of the step."""
    seen = []
    default = STRATEGIES["default"]

    def recording(strategy, params, optimizers, state, step, meta, lr):
        taken = {name: int(optimizer.state[params[name]]["step"]) for name, optimizer in optimizers.items()}
        seen.append((step, taken, meta["means2d"].grad is not None))
        default.post_backward(strategy, params, optimizers, state, step, meta, lr)

    monkeypatch.setitem(STRATEGIES, "default", dataclasses.replace(default, post_backward=recording))
    if four_d:
        frames, cameras = moving_scene()
        reconstruct_4d(frames, VIEWS, TIMES, cameras, Reconstruct4DOptions(**TINY, steps=6, reference_time=1))
    else:
        frames, trajectory = orbit_frames(64, 48, 16)
        reconstruct(frames, trajectory, ReconstructOptions(**TINY, steps=6))
    assert [step for step, _, _ in seen] == list(range(6))
    for step, taken, has_gradient in seen:
        assert set(taken.values()) == {step + 1}, (step, taken)
        assert has_gradient


def test_the_strategy_is_a_field_of_the_preset_and_mcmc_needs_cuda():
    assert {preset.strategy for preset in PRESETS.values()} == {"default"} and set(STRATEGIES) == {"default", "mcmc"}
    frames, trajectory = orbit_frames(64, 48, 16)
    with pytest.raises(ValueError, match="strategy must be one of default, mcmc"):
        reconstruct(frames, trajectory, ReconstructOptions(**TINY, steps=2, strategy="adc"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="strategy 'mcmc' needs a CUDA device .*relocates Gaussians"):
            reconstruct(frames, trajectory, ReconstructOptions(**TINY, steps=2, strategy="mcmc"))
        return
    options = ReconstructOptions(**{**TINY, "initial_points": 200}, steps=40, strategy="mcmc", device="cuda")
    result = reconstruct(frames, trajectory, options)
    assert "densification: gsplat mcmc" in result.report.as_text()
    assert len(result.gaussians) > 200  # MCMC adds 5% of the count at each refine step


def test_a_strategy_kinds_extra_loss_enters_the_loss(monkeypatch):
    frames, trajectory = orbit_frames(64, 48, 16)
    plain = reconstruct(frames, trajectory, ReconstructOptions(**TINY, steps=3)).report.final_loss
    heavy = StrategyKind(STRATEGIES["default"].build, STRATEGIES["default"].initial_state,
                         STRATEGIES["default"].post_backward, lambda params: params["means"].new_tensor(5.0))
    monkeypatch.setitem(STRATEGIES, "default", heavy)
    weighted = reconstruct(frames, trajectory, ReconstructOptions(**TINY, steps=3)).report.final_loss
    assert weighted == pytest.approx(plain + 5.0, abs=1e-4)
