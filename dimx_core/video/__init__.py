"""CogVideoX image-to-video: loading components and (later) the director-aware denoising loop."""
