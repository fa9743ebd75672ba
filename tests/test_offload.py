"""traitvec on models whose layers accelerate offloads (CPU memory or disk) behind its own hooks.

A tiny Llama (3 layers, fp32) is placed three ways, each leaving some decoder layers' weights on
the meta device between calls, fetched by accelerate's ``AlignDevicesHook`` for each forward:

- ``disk``: ``accelerate.dispatch_model`` with layers 1-2 offloaded to a folder;
- ``cpu-hooks``: ``accelerate.cpu_offload`` on layers 1-2 (weights kept in a CPU state dict);
- ``from-pretrained``: the model saved, then ``from_pretrained(device_map=..., offload_folder=...)``.

Capture, steering and generation must give the plain model's numbers (within 1e-5), and
traitvec's hooks must leave accelerate's in place. A model whose embeddings are offloaded too
takes its inputs on the embedding hook's execution device, and ``wrap_model`` fingerprints
offloaded weights through accelerate's weights map: the same fingerprint as the plain model. On a
machine with CUDA, one more case splits the model over ``cuda:0`` and CPU offload.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import accelerate
import pytest
import torch
from conftest import write_trait
from tiny import make_model

from traitvec import load_trait
from traitvec.capture import Selection, capture, capture_sequences
from traitvec.generation import generate
from traitvec.models import LoadedModel, wrap_model
from traitvec.steering import Steer, steer

KINDS = ("disk", "cpu-hooks", "from-pretrained")
OFFLOADED = (1, 2)  # decoder layers whose weights live off the model
TOL = 1e-5
TEXTS = ["The quick brown fox jumps over", "Our startup lost its biggest client last month, and I worried"]
QUESTIONS = ["What causes inflation?", "How do glaciers form?", "Why do startups fail?"]


def device_map(offloaded: str, main: str = "cpu") -> dict[str, str]:
    placed = {f"model.layers.{i}": offloaded if i in OFFLOADED else main for i in range(3)}
    return {"model.embed_tokens": main, **placed, "model.norm": main, "model.rotary_emb": main, "lm_head": main}


@pytest.fixture(scope="module")
def plain() -> LoadedModel:
    return make_model("llama", layers=3)


def place(plain: LoadedModel, kind: str, tmp_path: Path) -> LoadedModel:
    """The same weights as ``plain``, with layers 1-2 offloaded behind accelerate's hooks."""
    model = copy.deepcopy(plain.model)
    if kind == "disk":
        model = accelerate.dispatch_model(model, device_map("disk"), main_device="cpu", offload_dir=tmp_path / "off")
    elif kind == "cpu-hooks":
        for i in OFFLOADED:
            accelerate.cpu_offload(model.model.layers[i], execution_device=torch.device("cpu"))
    else:
        from transformers import AutoModelForCausalLM

        model.save_pretrained(tmp_path / "saved")
        model = AutoModelForCausalLM.from_pretrained(
            tmp_path / "saved", device_map=device_map("disk"), offload_folder=tmp_path / "off", dtype=torch.float32
        )
    for i in OFFLOADED:  # really offloaded: no weights on the module between calls
        assert model.model.layers[i].mlp.up_proj.weight.device.type == "meta"
        assert hasattr(model.model.layers[i], "_hf_hook")
    loaded = wrap_model(model, plain.tokenizer, name=f"tiny-llama-{kind}")
    assert loaded.fingerprint == plain.fingerprint  # offloaded values are hashed from accelerate's weights map
    return loaded


def selections(loaded: LoadedModel) -> list[Selection]:
    out = []
    for text in TEXTS:
        ids = tuple(loaded.tokenizer.encode(text))
        out.append(Selection(ids, {"mean": tuple(range(1, len(ids))), "last": (len(ids) - 1,)}))
    return out


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def accelerate_state(loaded: LoadedModel) -> dict[str, tuple[Any, int, int]]:
    """Per module with an accelerate hook: the hook object, its forward-hook and pre-hook counts."""
    return {
        name: (module._hf_hook, len(module._forward_hooks), len(module._forward_pre_hooks))
        for name, module in loaded.model.named_modules()
        if hasattr(module, "_hf_hook")
    }


def forward(loaded: LoadedModel, text: str) -> torch.Tensor:
    ids = torch.tensor([loaded.tokenizer.encode(text)])
    with torch.inference_mode():
        return loaded.model(input_ids=ids.to(loaded.device)).logits.float().cpu()


@pytest.mark.parametrize("kind", KINDS)
def test_capture_matches_the_plain_model(plain: LoadedModel, kind: str, tmp_path: Path) -> None:
    loaded = place(plain, kind, tmp_path)
    for side in ("right", "left"):
        got = capture_sequences(loaded, selections(loaded), [0, 1, 2], padding_side=side)
        want = capture_sequences(plain, selections(plain), [0, 1, 2], padding_side=side)
        assert max_diff(got, want) <= TOL
    positives = ["The harvest failed, yet they said they could", "After the layoffs, Maria said this was a chance"]
    negatives = ["The harvest failed, and they said they could never", "After the layoffs, Maria said this was the end"]
    trait = load_trait(
        "test/offload", write_trait(tmp_path / "traits", "test/offload", positives, negatives).parents[1]
    )
    positions = ["prefill-mean", "last-token", "response-mean"]
    got_acts = capture(loaded, trait, positions=positions, response_tokens=3)
    want_acts = capture(plain, trait, positions=positions, response_tokens=3)
    for position in positions:
        assert float((got_acts[position].positive - want_acts[position].positive).abs().max()) <= TOL
        assert float((got_acts[position].negative - want_acts[position].negative).abs().max()) <= TOL


@pytest.mark.parametrize("kind", KINDS)
def test_steering_and_generation_match_the_plain_model(plain: LoadedModel, kind: str, tmp_path: Path) -> None:
    loaded = place(plain, kind, tmp_path)
    direction = torch.randn(32, generator=torch.Generator().manual_seed(1))
    baseline = forward(plain, TEXTS[0])
    for layer in (0, 1):  # a layer in memory, and an offloaded one
        with steer(plain, direction, layer=layer, coefficient=4.0, scale="absolute"):
            want = forward(plain, TEXTS[0])
        with steer(loaded, direction, layer=layer, coefficient=4.0, scale="absolute"):
            got = forward(loaded, TEXTS[0])
        assert float((want - baseline).abs().max()) > 0.1  # the steering does something
        assert float((got - want).abs().max()) <= TOL
    rows = [
        [Steer(direction, 1, 6.0, positions="response", scale="absolute")],
        [],
        [Steer(direction, 2, -6.0, scale="absolute")],
    ]
    want_gen = generate(plain, QUESTIONS, max_new_tokens=8, steering=rows)
    got_gen = generate(loaded, QUESTIONS, max_new_tokens=8, steering=rows)
    assert [g.tokens for g in got_gen] == [g.tokens for g in want_gen]
    assert [g.tokens for g in want_gen] != [g.tokens for g in generate(plain, QUESTIONS, max_new_tokens=8)]


@pytest.mark.parametrize("kind", KINDS)
def test_traitvec_hooks_leave_accelerates_in_place(plain: LoadedModel, kind: str, tmp_path: Path) -> None:
    loaded = place(plain, kind, tmp_path)
    before = accelerate_state(loaded)
    layer_hooks = [len(layer._forward_hooks) for layer in loaded.layers]
    assert before, "accelerate installed no hooks"
    direction = torch.randn(32, generator=torch.Generator().manual_seed(2))
    with steer(loaded, direction, layer=1, coefficient=3.0, scale="absolute"):
        assert len(loaded.layers[1]._forward_hooks) == layer_hooks[1] + 1  # ours beside accelerate's wrapper
        assert loaded.layers[1]._hf_hook is before["model.layers.1"][0]
        forward(loaded, TEXTS[1])
    capture_sequences(loaded, selections(loaded), [1])  # stops the pass early, inside offloaded layer 1
    with (
        pytest.raises(RuntimeError, match="inside"),
        steer(loaded, direction, layer=2, coefficient=1.0, scale="absolute"),
    ):
        raise RuntimeError("inside")
    assert accelerate_state(loaded) == before
    assert [len(layer._forward_hooks) for layer in loaded.layers] == layer_hooks
    for i in OFFLOADED:  # accelerate still offloads: the weights went back after every call
        assert loaded.layers[i].mlp.up_proj.weight.device.type == "meta"
    assert float((forward(loaded, TEXTS[1]) - forward(plain, TEXTS[1])).abs().max()) <= TOL


def test_a_model_offloaded_whole_captures_like_the_plain_model(plain: LoadedModel) -> None:
    model = accelerate.cpu_offload(copy.deepcopy(plain.model), execution_device=torch.device("cpu"))
    loaded = wrap_model(model, plain.tokenizer, name="tiny-llama-offloaded")
    assert model.model.embed_tokens.weight.device.type == "meta"  # the embeddings too live off the model
    assert loaded.device == torch.device("cpu")  # the hook's execution device, not meta
    got = capture_sequences(loaded, selections(loaded), [0, 1, 2])
    assert max_diff(got, capture_sequences(plain, selections(plain), [0, 1, 2])) <= TOL
    want = generate(plain, QUESTIONS[:2], max_new_tokens=6)
    assert [g.tokens for g in generate(loaded, QUESTIONS[:2], max_new_tokens=6)] == [g.tokens for g in want]


def test_wrap_model_fingerprints_offloaded_weights(plain: LoadedModel, tmp_path: Path) -> None:
    model = accelerate.dispatch_model(
        copy.deepcopy(plain.model), device_map("disk"), main_device="cpu", offload_dir=tmp_path / "off"
    )
    loaded = wrap_model(model, plain.tokenizer, name="tiny-llama-disk")
    assert loaded.fingerprint.startswith("params-sha256:") and loaded.fingerprint == plain.fingerprint
    changed = copy.deepcopy(plain.model)
    with torch.no_grad():
        changed.model.layers[2].mlp.up_proj.weight[5, 7] += 1e-3  # a deep, offloaded weight
    moved = accelerate.dispatch_model(changed, device_map("disk"), main_device="cpu", offload_dir=tmp_path / "off2")
    assert wrap_model(moved, plain.tokenizer, name="tiny-llama-disk-2").fingerprint != plain.fingerprint


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_split_over_cuda_and_cpu_offload_matches(plain: LoadedModel, tmp_path: Path) -> None:
    on_gpu = wrap_model(copy.deepcopy(plain.model).to("cuda:0"), plain.tokenizer, name="gpu", fingerprint="gpu")
    model = accelerate.dispatch_model(
        copy.deepcopy(plain.model), device_map("cpu", main="cuda:0"), main_device="cuda:0"
    )
    split = wrap_model(model, plain.tokenizer, name="split", fingerprint="split")
    assert split.device == torch.device("cuda:0")
    got = capture_sequences(split, selections(split), [0, 1, 2])
    assert max_diff(got, capture_sequences(on_gpu, selections(on_gpu), [0, 1, 2])) <= TOL
    direction = torch.randn(32, generator=torch.Generator().manual_seed(3))
    with steer(on_gpu, direction, layer=1, coefficient=4.0, scale="absolute"):
        want = forward(on_gpu, TEXTS[0])
    with steer(split, direction, layer=1, coefficient=4.0, scale="absolute"):
        got_logits = forward(split, TEXTS[0])
    assert float((got_logits - want).abs().max()) <= TOL
