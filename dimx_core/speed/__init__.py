"""Speed options of the denoising loop: attention kernel, fused QKV, merged directors, compile, fp8, step
caching and a 24 GB mode. Each is a named step applied for one run and undone when the run ends (session.py)."""
