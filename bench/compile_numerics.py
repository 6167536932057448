"""Where compiled CogVideoX blocks differ from eager ones, and whether the difference is an error (issue 16, item 9).

bench/RESULTS.md found the compiled guided step 1.97e-2 (relative L2) away from eager bf16, five times the spread
between attention kernels. A difference from eager bf16 is not by itself an error: eager bf16 rounds every
intermediate (each norm, each modulation, the tanh-GELU's pieces) to bf16, while inductor fuses those ops and keeps
fp32 inside a fused kernel. So every bf16 variant is measured against the same step computed in fp32 (the same
random weights, upcast), and the compiled block is compiled twice: as the pack compiles it, and with inductor's
`emulate_precision_casts` (which rounds a fused kernel's intermediates wherever eager would). Block by block,
the difference of the first block alone says whether one block already differs or the gap grows through the 42.

    python3 bench/compile_numerics.py --out $OUT/RESULTS-compile-numerics.md      # on the GPU, ~2 minutes
    python bench/compile_numerics.py --tiny --out /tmp/RESULTS-compile.md          # the logic, on the CPU
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from video_bench import Bench, rel_l2, timed_calls  # noqa: E402  (its model, inputs and timing)

from dimx_core.speed.compile import set_compiled  # noqa: E402
from dimx_core.speed.options import SpeedOptions  # noqa: E402
from dimx_core.speed.session import speed_applied  # noqa: E402


class Numerics:
    def __init__(self, args):
        bench_args = argparse.Namespace(tiny=args.tiny, device=args.device, quick=True, budget=args.budget,
                                        out=str(Path(args.out).parent), only=None)
        self.bench = Bench(bench_args)
        self.args = args
        self.rows: list[tuple[str, str, str]] = []
        self.outputs: dict[str, torch.Tensor] = {}
        self.blocks: dict[str, list[torch.Tensor]] = {}

    def call(self, name: str, speed: SpeedOptions, repeats: int = 2) -> torch.Tensor:
        """One guided step under `speed`; keeps its output and every block's output for the comparisons."""
        bench, notes, captured = self.bench, [], []
        handles = [block.register_forward_hook(lambda _m, _i, out: captured.append(out[0].detach().float()))
                   for block in bench.transformer.transformer_blocks]
        started = time.perf_counter()
        try:
            with torch.no_grad(), speed_applied(bench.transformer, speed, None, bench.shape, notes, bench.backend):
                bench._call()  # the first call compiles where the speed options ask for it
                first_s = time.perf_counter() - started
                captured.clear()
                seconds = timed_calls(bench._call, bench.device, repeats, warmup=0)[0]
                out = bench._call().float()
        finally:
            for handle in handles:
                handle.remove()
        depth = len(bench.transformer.transformer_blocks)
        self.outputs[name], self.blocks[name] = out, captured[-depth:]
        print(f"{name}: {seconds:.3f} s/step (first call {first_s:.1f} s); {'; '.join(notes)}")
        return out

    def reference_fp32(self) -> None:
        """The same step in fp32: the transformer upcast (same weights), the inputs upcast, PyTorch SDPA."""
        bench = self.bench
        reference = copy.deepcopy(bench.transformer).float()
        captured = []
        handles = [block.register_forward_hook(lambda _m, _i, out: captured.append(out[0].detach().float()))
                   for block in reference.transformer_blocks]
        with torch.no_grad():
            out = reference(hidden_states=bench.model_input.float(), encoder_hidden_states=bench.text.float(),
                            timestep=bench.timestep, image_rotary_emb=tuple(r.float() for r in bench.rotary),
                            return_dict=False)[0].float()
        for handle in handles:
            handle.remove()
        self.outputs["fp32"], self.blocks["fp32"] = out, captured
        del reference
        torch.cuda.empty_cache() if bench.device.type == "cuda" else None

    def recompile(self, emulate: bool) -> None:
        """Forget the compiled block and compile it again with inductor's precision emulation on or off."""
        import torch._inductor.config as inductor_config

        inductor_config.emulate_precision_casts = emulate
        torch._dynamo.reset()
        set_compiled(self.bench.transformer, False)

    def compare(self, name: str, against: str, what: str) -> None:
        out, ref = self.outputs[name], self.outputs[against]
        first = rel_l2(self.blocks[name][0], self.blocks[against][0])
        self.rows.append((f"{name} vs {against}", f"{rel_l2(out, ref):.2e}", f"{first:.2e}", what))

    def run(self) -> None:
        bench = self.bench
        bench.setup()
        attention = "sdpa" if self.args.tiny else "cudnn"
        self.reference_fp32()
        self.call("eager", SpeedOptions(attention=attention))
        self.call("eager, flash attention", SpeedOptions(attention="sdpa" if self.args.tiny else "flash"))
        self.recompile(emulate=False)
        self.call("compiled", SpeedOptions(attention=attention, compile=True))
        self.recompile(emulate=True)
        self.call("compiled, emulated casts", SpeedOptions(attention=attention, compile=True))
        self.recompile(emulate=False)
        self.compare("eager, flash attention", "eager", "kernel noise: two attention kernels, both eager bf16")
        self.compare("compiled", "eager", "the gap bench/RESULTS.md reported")
        self.compare("compiled, emulated casts", "eager", "inductor rounding where eager rounds")
        for name in ("eager", "eager, flash attention", "compiled", "compiled, emulated casts"):
            self.compare(name, "fp32", "error against the fp32 step")

    def markdown(self) -> str:
        command = "python3 bench/compile_numerics.py " + " ".join(sys.argv[1:])
        lines = ["# Compiled blocks: difference from eager and error against fp32 (issue 16, item 9)", "",
                 f"Command: `{command}`", "",
                 f"Device: {torch.cuda.get_device_name() if self.bench.device.type == 'cuda' else 'CPU (tiny)'}; "
                 f"torch {torch.__version__}; one guided step (batch 2) at {self.bench.shape[2]} tokens, random "
                 "weights; relative L2 of the step's output and of block 0's output alone.", "",
                 "| comparison | step output | block 0 | what it shows |", "| --- | --- | --- | --- |"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in self.rows]
        return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU: checks the logic")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--budget", type=float, default=240)
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", str(HERE)), "RESULTS-compile-numerics.md"))
    args = parser.parse_args(argv)
    numerics = Numerics(args)
    numerics.run()
    text = numerics.markdown()
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
