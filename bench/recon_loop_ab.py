"""A/B of the shared fit loop's two order changes on the 49-frame 720x480 synthetic orbit (bench/RESULTS-recon-loop.md):
densification after the optimisers' step (gsplat's order) vs before, and views reshuffled every epoch vs one
shuffled order repeated (the loop before recon/fit.py). Each variant patches SceneOptimizer.step / EpochOrder.next.

    python bench/recon_loop_ab.py new,old-order,fixed-cycle,both-old standard 0    # on the GPU, ~80 s a variant
"""
import sys
import torch
sys.path.insert(0, ".")
from dimx_core.recon import fit as F
from dimx_core.recon.raster import select_rasterizer
from dimx_core.recon.render import render_views
from dimx_core.recon.synthetic import ball_before_wall, orbit_rig
from dimx_core.recon.train import ReconstructOptions, reconstruct

device = torch.device("cuda")
rasterizer = select_rasterizer(device)
trajectory = orbit_rig(49, 30.0, 720, 480)
images = render_views(ball_before_wall(60000), trajectory, rasterizer=rasterizer)
new_step, new_next = F.SceneOptimizer.step, F.EpochOrder.next


def old_order(self, step, meta):
    self.kind.post_backward(self.strategy, self.params, self.optimizers, self.strategy_state, step, meta,
                            self.means_decay.get_last_lr()[0])
    for optimizer in self.optimizers.values():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    self.means_decay.step()
    if self.pose_optimizer is not None:
        self.pose_optimizer.step()
        self.pose_optimizer.zero_grad(set_to_none=True)


def fixed_cycle(self):
    if not self.order:
        self.order = torch.randperm(len(self.items), generator=self.generator).tolist()
    self.position += 1
    return self.items[self.order[(self.position - 1) % len(self.order)]]


variants = {"new": (new_step, new_next), "old-order": (old_order, new_next), "fixed-cycle": (new_step, fixed_cycle),
            "both-old": (old_order, fixed_cycle)}
for name in sys.argv[1].split(","):
    F.SceneOptimizer.step, F.EpochOrder.next = variants[name]
    result = reconstruct(images, trajectory, ReconstructOptions(preset=sys.argv[2], poses="trajectory", holdout_every=8,
                                                                device="cuda", seed=int(sys.argv[3])))
    r = result.report
    print(f"| {name} | {sys.argv[2]} | seed {sys.argv[3]} | {r.seconds:.1f} s | {r.heldout_psnr:.2f} dB | {r.gaussians} |",
          flush=True)
