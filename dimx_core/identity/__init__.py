"""Identity-preserving 4D (DimensionX): reference frame, reference-latent sharing, multi-view videos, refinement."""
