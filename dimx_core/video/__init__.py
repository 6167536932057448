"""CogVideoX image-to-video: loading components, the request and runtime of a run, and the denoising loop."""
