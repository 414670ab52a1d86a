"""Finding decoder layers, embeddings and head across architectures."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from grass.errors import ModelError
from grass.layers import find_layers
from grass.models.configs import TINY_MODELS
from grass.models.load import load_model


@pytest.mark.parametrize("arch", TINY_MODELS)
def test_tiny_models_partition_parameters(arch):
    model, _ = load_model(arch)
    lm = find_layers(model)
    assert len(lm) == 6
    ids = [id(p) for i in range(len(lm)) for p in lm.layer_params(i)]
    ids += [id(p) for p in lm.embed_params + lm.head_params]
    assert sorted(ids) == sorted({id(p) for p in model.parameters()})  # each parameter exactly once


def test_mistral_and_peft_wrapped():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, MistralConfig

    model = AutoModelForCausalLM.from_config(MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                                           num_attention_heads=4, num_key_value_heads=2,
                                                           vocab_size=100))
    assert find_layers(model).path == "model.layers"
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear"))
    assert len(find_layers(wrapped)) == 3


class _Generic(nn.Module):
    """Not a transformers model: one ModuleList of blocks."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(4))
        self.out = nn.Linear(8, 10)

    def get_input_embeddings(self):
        return self.emb


def test_generic_module_list():
    lm = find_layers(_Generic())
    assert lm.path == "blocks" and len(lm) == 4 and len(lm.head_params) == 2


def test_no_layers_is_a_clear_error():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2)

    with pytest.raises(ModelError, match="cannot find the decoder layers of Flat"):
        find_layers(Flat())


def test_random_init_builds_the_architecture_without_weights():
    # smollm2-135m from its config alone (no GGUF package needed): same shapes, random weights.
    model, tok = load_model("smollm2-135m", dtype="bfloat16", init="random")
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.dtype == torch.bfloat16 and len(find_layers(model)) == 30
    assert tok("hello")["input_ids"] and max(tok("hello")["input_ids"]) < model.config.vocab_size
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        load_model("no-such-model", init="random")
