#!/usr/bin/env bash
# Issue 14's GPU measurements in one device call (nvidia-h200, at most 540 s), in order of importance:
#   (a) the standard preset on 49 frames at 720x480: time and held-out PSNR (goal <= 45 s), with gsplat's build,
#       its parity with the fallback rasterizer and one view's forward + backward (recon_bench.py);
#   (b) gsplat's own examples/simple_trainer.py on the same frames and exact poses with the preset's steps, starting
#       points and refinement schedule: wall time per step beside the pack's (same recon_bench.py call);
#   (c) the plain loop against the pack's fit on the fine ground seen at grazing angles (recon_plain.py), the exact
#       poses refined and kept;
#   (d) the same ground with the training poses perturbed (0.5 deg, 1% of the scene scale), refined and kept: what
#       refinement gains where the poses are off.
# Each stage runs only when the budget leaves it its expected time, under `timeout` for what is left, and writes its
# markdown as it goes, so a stage cut short keeps what it measured. What it expects beside the repository (see
# bench/README.md, "One device call for issue 14"): .whl/recon (gsplat, kornia), .whl/simple-trainer (tyro and its
# needs), bench/work/gsplat-examples-v1.5.3, bench/work/fused-ssim, bench/work/pycolmap-fork (all ignored by git).
#
#   bash bench/recon_device.sh --out "$OUT"                     # on the device, 520 s
#   bash bench/recon_device.sh --tiny --budget 900 --out /tmp/d  # this script's plumbing on a CPU, tiny sizes
set -u
budget=520
tiny=0
out=${OUT:-/tmp/recon-device}
while (($#)); do
  case $1 in
    --budget) budget=$2; shift 2 ;;
    --tiny) tiny=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) echo "recon_device.sh: unknown argument $1 (expected --budget SECONDS, --tiny, --out DIR)" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.." || exit 2
mkdir -p "$out"
summary=$out/recon_device_summary.md
examples=bench/work/gsplat-examples-v1.5.3
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
note() { echo "$*" | tee -a "$summary"; }

# stage NAME EXPECTED_SECONDS COMMAND...: runs COMMAND when EXPECTED_SECONDS are left, stopped 5 s before the budget
stage() {
  local name=$1 expected=$2 remaining
  shift 2
  remaining=$(left)
  if ((remaining < expected)); then
    note "| $name | skipped | $remaining s left, expects $expected s |"
    return
  fi
  local began=$SECONDS
  timeout --kill-after=5 $((remaining - 5)) "$@" >"$out/$name.log" 2>&1
  local rc=$?
  note "| $name | $([ $rc = 0 ] && echo done || echo "exit $rc$([ $rc = 124 ] && echo ', out of budget')") | $((SECONDS - began)) s |"
}

echo "# Issue 14 device run ($(date -u '+%Y-%m-%d %H:%M UTC'), budget $budget s$([ $tiny = 1 ] && echo ', --tiny'))" >"$summary"
note ""
note "| stage | result | wall |"
note "| --- | --- | --- |"
if [ $tiny = 1 ]; then
  device=(--device cpu)
  a_args=(--quick --presets fast --steps 60)
  c_args=(--device cpu --threads 2 --size 64x48 --frames 16 --steps 60 --points 2000 --scene-gaussians 1500)
else
  device=()
  a_args=(--presets standard)
  c_args=(--size 720x480 --frames 49 --steps 7000 --points 50000)
fi

# wheels: the pack's GPU needs and simple_trainer's CLI; where none travelled (a CPU check), the local environment
python=${PYTHON:-python3}
site=${SITE:-/tmp/site}
shopt -s nullglob
wheels=(.whl/recon/*.whl .whl/simple-trainer/*.whl)
shopt -u nullglob
if ((${#wheels[@]})); then
  $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "${wheels[@]}" >"$out/setup.log" 2>&1 || { note "| install | failed (setup.log) | |"; exit 1; }
fi
export PYTHONPATH=$site:$PWD${PYTHONPATH:+:$PYTHONPATH}
# fused-ssim (simple_trainer's SSIM, not on PyPI; its setup.py builds for the GPU it finds) compiles while gsplat
# compiles its kernels (cached under ~/.cache, so the stages below find them built)
if [ $tiny = 0 ]; then
  if [ -d bench/work/fused-ssim ]; then
    MAX_JOBS=8 $python -m pip install -q --no-build-isolation --no-deps --no-cache-dir \
      --target "$site" bench/work/fused-ssim >>"$out/setup.log" 2>&1 &
    ssim_build=$!
  fi
  stage gsplat_build 60 $python -c "import sys; sys.path.insert(0, '.')
from dimx_core.recon.raster import gsplat_status
reason = gsplat_status(); print(reason or 'gsplat kernels ready'); sys.exit(1 if reason else 0)"
  if [ -n "${ssim_build:-}" ]; then
    wait "$ssim_build" && note "| fused-ssim build | done | |" || note "| fused-ssim build | failed (setup.log) | |"
  fi
fi
# (a) and (b) in one process: simple_trainer runs after the pack's fit, on its frames, once the fit's rows are written
trainer=()
if [ -d "$examples" ]; then
  trainer=(--simple-trainer "$examples")
else
  note "| simple_trainer | skipped | $examples is absent (bench/README.md says how to place it) |"
fi
rm -f bench/work/simple-trainer-log.txt
stage ab_standard_fit_and_simple_trainer 150 $python bench/recon_bench.py "${device[@]}" "${a_args[@]}" --skip-sfm \
  --fallback-steps 0 "${trainer[@]}" --out "$out/RESULTS-recon-device.md"
{ echo "--- simple_trainer's output"; cat bench/work/simple-trainer-log.txt; } >>"$out/ab_standard_fit_and_simple_trainer.log" 2>/dev/null
stage c_plain_ground 150 $python bench/recon_plain.py "${c_args[@]}" --scenes ground --fits plain,pack,pack-fixed-poses \
  --out "$out/RESULTS-recon-plain-device.md"
stage d_perturbed_ground 120 $python bench/recon_plain.py "${c_args[@]}" --scenes ground \
  --fits pack-perturbed,pack-perturbed-fixed-poses --out "$out/RESULTS-recon-plain-device.md"
note ""
note "total $((SECONDS - start)) s of $budget s"
