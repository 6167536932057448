"""Director training (DimensionX's ST-Director): a LoRA on CogVideoX image-to-video's attention projections,
trained on a dimension-variant dataset (dimx_core.datasets) with diffusers + peft. trainer.train_director is the
one entry point; options.TrainOptions is the run's one value."""
