"""Facts about CogVideoX itself that several packages share: the published configs, what a checkpoint can do
(ModelSpec), and ComfyUI's native layer names. A leaf: it imports nothing of the pack."""
