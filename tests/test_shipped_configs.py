"""Every experiment config shipped under experiments/ parses, and its architecture's layers are found.

For each shipped config, the table below names the transformers architecture its model has, the
class ``AutoModelForCausalLM`` builds for it (what :func:`traitvec.load_model` gets) and where its
decoder layers sit. A random-init model of that architecture from a tiny config (2 layers, width
32) must come out as that class, and :func:`traitvec.layers.find_layers` must find its layers at
that path; a forward hook on the last one must see the residual stream. The real depth and width
are in the table too, checked against each config's comment header.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from conftest import ROOT
from tiny import make_config
from transformers import AutoModelForCausalLM, Gemma3Config

from traitvec.experiments import list_experiments, load_experiment
from traitvec.hooks import HookSet, hidden_of
from traitvec.layers import find_layers

EXPERIMENTS = ROOT / "experiments"

# folder → (model_type, class AutoModelForCausalLM builds, layers path, real layers, real width)
SHIPPED: dict[str, tuple[str, str, str, int, int]] = {
    "gemma-3-270m": ("gemma3_text", "Gemma3ForCausalLM", "model.layers", 18, 640),
    "smollm2-135m-instruct": ("llama", "LlamaForCausalLM", "model.layers", 30, 576),
    "gemma-2-2b": ("gemma2", "Gemma2ForCausalLM", "model.layers", 26, 2304),
    "gemma-2-2b-it": ("gemma2", "Gemma2ForCausalLM", "model.layers", 26, 2304),
    "gemma-3-4b-pt": ("gemma3", "Gemma3ForConditionalGeneration", "model.language_model.layers", 34, 2560),
    "gemma-3-4b-it": ("gemma3", "Gemma3ForConditionalGeneration", "model.language_model.layers", 34, 2560),
    "llama-3.1-8b": ("llama", "LlamaForCausalLM", "model.layers", 32, 4096),
    "llama-3.1-8b-instruct": ("llama", "LlamaForCausalLM", "model.layers", 32, 4096),
    "qwen2.5-7b": ("qwen2", "Qwen2ForCausalLM", "model.layers", 28, 3584),
    "qwen2.5-7b-instruct": ("qwen2", "Qwen2ForCausalLM", "model.layers", 28, 3584),
    "mistral-7b-v0.3": ("mistral", "MistralForCausalLM", "model.layers", 32, 4096),
    "mistral-7b-instruct-v0.3": ("mistral", "MistralForCausalLM", "model.layers", 32, 4096),
    "olmo-2-1124-7b": ("olmo2", "Olmo2ForCausalLM", "model.layers", 32, 4096),
    "olmo-2-1124-7b-instruct": ("olmo2", "Olmo2ForCausalLM", "model.layers", 32, 4096),
    "llama-3.1-70b-instruct": ("llama", "LlamaForCausalLM", "model.layers", 80, 8192),
}
EMBEDDED = {"gemma-3-270m", "smollm2-135m-instruct"}


def tiny_config(model_type: str) -> Any:
    """A tiny config of ``model_type``: 2 decoder layers, width 32, 4 heads (and a 1-layer vision tower)."""
    if model_type == "gemma3":  # multimodal: a SigLIP tower and a Gemma 3 text decoder
        text = make_config("gemma3_text", layers=2).to_dict()
        vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
        vision |= dict(image_size=28, patch_size=14)  # 2 x 2 patches, pooled to mm_tokens_per_image = 4
        return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    return make_config(model_type, layers=2)


def test_the_table_covers_exactly_the_shipped_configs() -> None:
    assert set(list_experiments(EXPERIMENTS)) == set(SHIPPED)


@pytest.mark.parametrize("folder", sorted(SHIPPED))
def test_shipped_config_parses_and_says_what_it_is(folder: str) -> None:
    config = load_experiment(folder, root=EXPERIMENTS)
    _, _, _, layers, width = SHIPPED[folder]
    if folder in EMBEDDED:
        assert config.model == folder
    else:  # a hub id, and the folder is named after the model
        org, name = config.model.split("/")
        assert org and name.lower() == folder
        assert config.chat_template is (not _is_base(folder)), "base models take raw prefills, instruct ones chat"
    header = "".join(
        line for line in config.path.joinpath("config.toml").read_text().splitlines(True) if line[:1] == "#"
    )
    assert re.search(rf"\b{layers} layers\b", header), f"{folder}: header does not say {layers} layers"
    assert re.search(rf"\bwidth {width}\b", header), f"{folder}: header does not say width {width}"
    if folder not in EMBEDDED:
        assert re.search(r"\d+(\.\d+)? GB of weights in bf16", header), f"{folder}: header gives no bf16 memory"


def _is_base(folder: str) -> bool:
    return not re.search(r"-(it|instruct)(-|$)", folder)


def test_the_large_example_spreads_over_devices() -> None:
    config = load_experiment("llama-3.1-70b-instruct", root=EXPERIMENTS)
    assert config.device_map == "auto"
    assert config.dtype == "bfloat16"


@pytest.mark.parametrize("model_type", sorted({row[0] for row in SHIPPED.values()}))
def test_layers_are_found_on_a_tiny_model_of_each_architecture(model_type: str) -> None:
    rows = {(cls, path) for kind, cls, path, _, _ in SHIPPED.values() if kind == model_type}
    assert len(rows) == 1, f"configs of {model_type} disagree on class or layer path: {rows}"
    [(cls, path)] = rows
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type), dtype=torch.float32).eval()
    assert type(model).__name__ == cls
    layers, found = find_layers(model)
    assert found == path
    assert len(layers) == 2
    seen: list[torch.Tensor] = []
    ids = torch.tensor([[1, 17, 42, 99, 7]])
    with HookSet() as hooks, torch.inference_mode():
        hooks.forward(layers[-1], lambda module, args, output: seen.append(hidden_of(output)))
        model(input_ids=ids)
    assert len(seen) == 1 and seen[0].shape == (1, ids.shape[1], 32)
    assert bool(torch.isfinite(seen[0]).all())
