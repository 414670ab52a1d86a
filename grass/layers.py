"""Find a decoder LM's blocks, embeddings, final norm and head; freeze and unfreeze them.

Known layouts are tried first (LLaMA/Qwen2/Mistral/Gemma: ``model.layers``; GPT-2: ``transformer.h``;
multimodal Gemma3: ``model.language_model.layers``; GPT-NeoX; OPT). Otherwise the model must hold
exactly one ``nn.ModuleList`` of identical blocks, which is then taken as the decoder.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from grass.errors import ModelError

KNOWN_PATHS = ("model.layers", "model.language_model.layers", "model.decoder.layers", "transformer.h",
               "gpt_neox.layers", "language_model.model.layers")


@dataclass
class LayerMap:
    """Where the trainable pieces of a decoder LM live.

    Attributes:
        path: dotted path of the decoder ``ModuleList`` (e.g. ``model.layers``).
        layers: the decoder blocks, in order (layer 0 is nearest the embeddings).
        embed_params: input (and position) embedding parameters.
        head_params: final norm and LM head parameters that are not embedding parameters
            (empty except for the norm when the head is tied to the embeddings).
    """

    path: str
    layers: nn.ModuleList
    embed_params: list[nn.Parameter]
    head_params: list[nn.Parameter]

    def __len__(self) -> int:
        return len(self.layers)

    def layer_params(self, i: int) -> list[nn.Parameter]:
        return list(self.layers[i].parameters())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain transformers model under PEFT / DDP wrappers."""
    while True:
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), nn.Module) and not hasattr(model, "config"):
            model = model.module
        else:
            return model


def _get(root: nn.Module, path: str):
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _generic_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    candidates = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) >= 2 and len({type(m) for m in mod}) == 1:
            candidates.append((name, mod))
    # A ModuleList nested inside a block (e.g. experts) is not the decoder: keep the outermost ones.
    top = [(n, m) for n, m in candidates if not any(n.startswith(o + ".") for o, _ in candidates if o != n)]
    return top[0] if len(top) == 1 else None


def find_layers(model: nn.Module) -> LayerMap:
    """Locate the decoder blocks and the always-trained pieces of ``model``.

    Raises:
        ModelError: no unique list of decoder blocks (names the model class).
    """
    base = unwrap_model(model)
    found = None
    for path in KNOWN_PATHS:
        obj = _get(base, path)
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            found = (path, obj)
            break
    if found is None:
        found = _generic_blocks(base)
    if found is None:
        raise ModelError(f"cannot find the decoder layers of {type(base).__name__}: expected one of "
                         f"{', '.join(KNOWN_PATHS)} or a single nn.ModuleList of identical blocks")
    path, layers = found
    in_layers = {id(p) for p in layers.parameters()}
    embed_modules = [base.get_input_embeddings()]
    wpe = _get(base, "transformer.wpe")  # GPT-2's learned position embeddings
    if isinstance(wpe, nn.Module):
        embed_modules.append(wpe)
    embed, seen = [], set()
    for m in embed_modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                embed.append(p)
    head = []
    for p in base.parameters():
        if id(p) not in in_layers and id(p) not in seen:
            seen.add(id(p))
            head.append(p)
    return LayerMap(path=path, layers=layers, embed_params=embed, head_params=head)


def set_requires_grad(params, flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


def freeze_all(model: nn.Module) -> None:
    set_requires_grad(model.parameters(), False)
