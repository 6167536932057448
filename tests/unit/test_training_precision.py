"""The adapter in training on a bf16 model: fp32 weights that the optimizer updates, read as bf16 in the forward pass
(as automatic mixed precision does), so no activation is cast to fp32 (issue 17's step time)."""
import copy

import pytest
import torch

from dimx_core.cogvideox.spec import COGVIDEOX_5B_I2V_SCHEDULER
from dimx_core.tiny import TINY_TRANSFORMER
from dimx_core.training.lora import TRAINING_ADAPTER, adapter_state, add_training_adapter
from dimx_core.training.trainer import director_loss
from dimx_core.video.solvers import make_scheduler

diffusers = pytest.importorskip("diffusers")


def _inputs():
    generator = torch.Generator().manual_seed(0)
    shape = (1, 5, 16, 12, 18)
    tensors = [torch.randn(*shape, generator=generator) for _ in range(3)]
    prompt = torch.randn(1, 226, TINY_TRANSFORMER["text_embed_dim"], generator=generator)
    return [t.bfloat16() for t in tensors[:2]] + [torch.tensor([500])] + [tensors[2].bfloat16(), prompt.bfloat16()]


def _trainable(transformer):
    parameters, _ = add_training_adapter(transformer, 4, 1.0, seed=0)
    with torch.no_grad():  # B is zero at the start: give the adapter an effect to compare
        for name, parameter in transformer.named_parameters():
            if ".lora_B." in name and TRAINING_ADAPTER in name:
                parameter.normal_(0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    return parameters


def _lora_weights(transformer, kind):
    return [layer for name, layer in transformer.named_modules() if name.endswith(f"{kind}.{TRAINING_ADAPTER}")]


@pytest.fixture(scope="module")
def models():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = diffusers.CogVideoXTransformer3DModel(**TINY_TRANSFORMER).to(torch.bfloat16)
    return base, copy.deepcopy(base)


def test_the_adapter_keeps_fp32_weights_read_as_bf16_and_learns_what_fp32_products_learn(models):
    mixed, reference = models
    scheduler = make_scheduler("ddim", COGVIDEOX_5B_I2V_SCHEDULER)
    parameters = _trainable(mixed)
    reference_parameters = _trainable(reference)
    for layer in _lora_weights(reference, "lora_A") + _lora_weights(reference, "lora_B"):
        torch.nn.utils.parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)  # peft's fp32
    assert all(p.dtype == torch.float32 and p.requires_grad for p in parameters)
    assert {layer.weight.dtype for layer in _lora_weights(mixed, "lora_A")} == {torch.bfloat16}
    assert {layer.weight.dtype for layer in _lora_weights(reference, "lora_A")} == {torch.float32}
    for model_parameters in (parameters, reference_parameters):  # both start from the same fp32 values
        assert len(model_parameters) == 4 * 2 * TINY_TRANSFORMER["num_layers"]
    assert all(torch.equal(a, b) for a, b in zip(parameters, reference_parameters))

    losses = []
    for transformer in (mixed, reference):
        loss = director_loss(transformer, scheduler, *_inputs())
        loss.backward()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=2e-2)
    for mine, theirs in zip(parameters, reference_parameters):
        assert mine.grad is not None and mine.grad.dtype == torch.float32
        cosine = torch.nn.functional.cosine_similarity(mine.grad.flatten(), theirs.grad.flatten(), dim=0)
        assert cosine > 0.98

    # the file holds the fp32 weights under diffusers' keys, as from a model without the cast
    state = adapter_state(mixed)
    assert set(state) == set(adapter_state(reference))
    assert all(key.endswith(("lora_A.weight", "lora_B.weight")) for key in state)
    first = "transformer.transformer_blocks.0.attn1.to_q.lora_A.weight"
    assert state[first].dtype == torch.float32 and torch.equal(state[first], parameters[0].detach())
