"""Steering hooks and batched generation on tiny models of four architectures."""

from __future__ import annotations

import pytest
import torch
from tiny import ARCHITECTURES, make_model

from traitvec import ConfigError
from traitvec.batching import pad_batch
from traitvec.capture import Activations
from traitvec.generation import context_length, fit_context, generate
from traitvec.methods import MeanDiff
from traitvec.steering import Steer, SteeringHandle, steer, steer_rows

PROMPTS = ["What causes rain?", "The quick brown fox", "Honestly, I have to admit"]


def ids_of(loaded, texts=PROMPTS) -> list[list[int]]:
    return [list(loaded.tokenizer(t)["input_ids"]) for t in texts]


def direction(loaded, seed: int = 0) -> torch.Tensor:
    v = torch.randn(loaded.hidden_size, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def hook_counts(loaded) -> list[int]:
    modules = [*loaded.layers, loaded.model]
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules] + [
        len(m._forward_pre_hooks) for m in loaded.model.modules()
    ]


class Recorder:
    """Plain forward hook recording a layer's output at every call (test code, not traitvec's).

    Created after steering is attached: ``prepend=True`` then runs before every other hook (sees the
    output before steering), otherwise after them (sees the steered output).
    """

    def __init__(self, module: torch.nn.Module, *, prepend: bool = False) -> None:
        self.calls: list[torch.Tensor] = []
        self.handle = module.register_forward_hook(self, prepend=prepend)

    def __call__(self, module, args, output) -> None:
        self.calls.append((output[0] if isinstance(output, tuple) else output).detach().clone())

    def remove(self) -> None:
        self.handle.remove()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_coefficient_zero_is_bit_identical(arch: str) -> None:
    loaded = make_model(arch)
    v = direction(loaded)
    batch = torch.tensor(ids_of(loaded, ["The quick brown fox jumps"]))
    with torch.no_grad():
        plain = loaded.model(batch).logits
        with steer(loaded, v, layer=1, coefficient=0.0, scale="absolute"):
            zero = loaded.model(batch).logits
    assert torch.equal(plain, zero)
    base = generate(loaded, ids_of(loaded), max_new_tokens=6)
    steered = generate(loaded, ids_of(loaded), max_new_tokens=6, steering=[[Steer(v, 1, 0.0, scale="absolute")]] * 3)
    assert [g.tokens for g in base] == [g.tokens for g in steered]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_steered_layer_output_is_baseline_plus_coefficient_times_vector(arch: str) -> None:
    loaded = make_model(arch)
    v = direction(loaded)
    batch = torch.tensor(ids_of(loaded, ["The quick brown fox jumps"]))
    with torch.no_grad(), steer(loaded, v, layer=1, coefficient=2.5, scale="absolute"):
        before, after = Recorder(loaded.layers[1], prepend=True), Recorder(loaded.layers[1])
        loaded.model(batch)
        before.remove()
        after.remove()
    torch.testing.assert_close(after.calls[0], before.calls[0] + 2.5 * v, atol=1e-6, rtol=1e-6)


def _only_last_column_steered(delta: torch.Tensor, expected: torch.Tensor) -> None:
    """Every prompt position unchanged but the last one, which moved by ``expected`` in every row."""
    assert torch.count_nonzero(delta[:, :-1]) == 0
    torch.testing.assert_close(delta[:, -1], expected.expand_as(delta[:, -1]), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_response_steering_reaches_every_generated_token_and_only_the_last_prompt_position(arch: str) -> None:
    loaded = make_model(arch)
    v = direction(loaded)
    prompts = ids_of(loaded)  # three lengths: left padding puts every row's last prompt token in the last column
    with steer(loaded, v, layer=1, coefficient=3.0, positions="response", scale="absolute"):
        before, after = Recorder(loaded.layers[1], prepend=True), Recorder(loaded.layers[1])
        out = generate(loaded, prompts, max_new_tokens=5)
        before.remove()
        after.remove()
    assert len(before.calls) >= 2  # a prompt pass, then one pass per generated token with the KV cache
    prompt_pass = after.calls[0] - before.calls[0]
    assert prompt_pass.shape[1] == max(len(p) for p in prompts)
    _only_last_column_steered(prompt_pass, 3.0 * v)  # the position that produces the first answer token
    for step_before, step_after in zip(before.calls[1:], after.calls[1:], strict=True):
        assert step_before.shape[1] == 1  # the cache is on: one new token per call
        torch.testing.assert_close(step_after - step_before, (3.0 * v).expand_as(step_before), atol=1e-6, rtol=1e-5)
    assert len(before.calls) - 1 == max(len(g.raw_tokens) for g in out) - 1


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_response_steering_without_the_kv_cache(arch: str) -> None:
    loaded = make_model(arch)
    v = direction(loaded)
    padded = pad_batch(ids_of(loaded), loaded.tokenizer.pad_token_id, side="left")
    width = padded.width
    with torch.no_grad(), steer(loaded, v, layer=1, coefficient=3.0, positions="response", scale="absolute"):
        before, after = Recorder(loaded.layers[1], prepend=True), Recorder(loaded.layers[1])
        loaded.model.generate(
            input_ids=padded.input_ids,
            attention_mask=padded.attention_mask,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            use_cache=False,
            pad_token_id=loaded.tokenizer.pad_token_id,
        )
        before.remove()
        after.remove()
    assert [c.shape[1] for c in before.calls] == [width + k for k in range(4)]  # every step re-reads it all
    for step_before, step_after in zip(before.calls, after.calls, strict=True):
        delta = step_after - step_before
        _only_last_column_steered(delta[:, :width], 3.0 * v)
        torch.testing.assert_close(delta[:, width:], (3.0 * v).expand_as(delta[:, width:]), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cache", [True, False])
def test_response_steering_can_change_the_first_generated_token(cache: bool) -> None:
    loaded = make_model("llama")
    v = direction(loaded)
    padded = pad_batch(ids_of(loaded), loaded.tokenizer.pad_token_id, side="left")
    settings = dict(max_new_tokens=1, do_sample=False, use_cache=cache, pad_token_id=loaded.tokenizer.pad_token_id)
    with torch.no_grad():
        plain = loaded.model.generate(input_ids=padded.input_ids, attention_mask=padded.attention_mask, **settings)
        with steer(loaded, v, layer=2, coefficient=40.0, positions="response", scale="absolute"):
            steered = loaded.model.generate(
                input_ids=padded.input_ids, attention_mask=padded.attention_mask, **settings
            )
    first_plain, first_steered = plain[:, padded.width].tolist(), steered[:, padded.width].tolist()
    assert all(a != b for a, b in zip(first_plain, first_steered, strict=True)), (first_plain, first_steered)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_prompt_steering_stops_at_the_prompt(arch: str) -> None:
    loaded = make_model(arch)
    v = direction(loaded)
    with steer(loaded, v, layer=0, coefficient=1.5, positions="prompt", scale="absolute"):
        before, after = Recorder(loaded.layers[0], prepend=True), Recorder(loaded.layers[0])
        generate(loaded, ids_of(loaded)[:1], max_new_tokens=4)
        before.remove()
        after.remove()
    expected = (1.5 * v).expand_as(before.calls[0])
    torch.testing.assert_close(after.calls[0] - before.calls[0], expected, atol=1e-6, rtol=1e-5)
    for b, a in zip(before.calls[1:], after.calls[1:], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_batched_sweep_matches_each_configuration_alone(arch: str) -> None:
    loaded = make_model(arch)
    v = direction(loaded)
    coefficients = [0.0, 1.0, 4.0, -4.0]
    layers = [0, 2]
    configs = [[Steer(v, layer, c, scale="absolute")] for layer in layers for c in coefficients]
    prompts = [p for _ in configs for p in ids_of(loaded)]
    rows = [c for c in configs for _ in PROMPTS]
    together = generate(loaded, prompts, max_new_tokens=6, steering=rows)
    split = generate(loaded, prompts, max_new_tokens=6, steering=rows, max_batch_size=5)
    alone = [generate(loaded, [p], max_new_tokens=6, steering=[r])[0] for p, r in zip(prompts, rows, strict=True)]
    assert [g.tokens for g in together] == [g.tokens for g in alone]
    assert [g.tokens for g in split] == [g.tokens for g in alone]
    assert len({g.tokens for g in alone}) > len(PROMPTS)  # the configurations really differ


def test_a_plan_never_meets_a_batch_of_another_size() -> None:
    loaded = make_model("llama")
    v = direction(loaded)
    batch = torch.tensor([[1, 20, 30], [1, 40, 50]])
    with steer_rows(loaded, [[Steer(v, 1, 1.0, scale="absolute")]] * 3), pytest.raises(ConfigError, match="3 rows"):
        with torch.no_grad():
            loaded.model(batch)


def test_broadcast_configuration_fits_any_batch() -> None:
    loaded = make_model("qwen2")
    v = direction(loaded)
    with torch.no_grad(), steer(loaded, v, layer=1, coefficient=1.0, scale="absolute"):
        for rows in (1, 3):
            loaded.model(torch.tensor([[1, 20, 30, 40]] * rows))


def test_ablation_and_pinning() -> None:
    loaded = make_model("llama")
    v = direction(loaded)
    batch = torch.tensor([[1, 20, 30, 40, 50]])
    for mode, target in (("ablate", 0.0), ("pin", 2.0)):
        with torch.no_grad(), steer(loaded, v, layer=1, coefficient=target, mode=mode, scale="absolute"):
            after = Recorder(loaded.layers[1])
            loaded.model(batch)
            after.remove()
        torch.testing.assert_close(after.calls[0] @ v, torch.full((1, 5), target), atol=1e-5, rtol=0)


def test_rows_with_different_modes_and_layers_in_one_batch() -> None:
    loaded = make_model("gemma")
    v = direction(loaded)
    rows = [
        [],
        [Steer(v, 1, 2.0, scale="absolute")],
        [Steer(v, 1, 0.0, mode="ablate")],
        [Steer(v, 0, 1.0, scale="absolute"), Steer(v, 1, -1.0, mode="pin", scale="absolute")],
    ]
    batch = torch.tensor([[1, 20, 30, 40]] * 4)
    with torch.no_grad(), steer_rows(loaded, rows):
        before, after = Recorder(loaded.layers[1], prepend=True), Recorder(loaded.layers[1])
        loaded.model(batch)
        before.remove()
        after.remove()
    b, a = before.calls[0], after.calls[0]
    assert torch.equal(a[0], b[0])
    torch.testing.assert_close(a[1], b[1] + 2.0 * v, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(a[2] @ v, torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(a[3] @ v, torch.full((4,), -1.0), atol=1e-5, rtol=0)


def test_hooks_are_removed_on_exit_and_on_exceptions_and_others_are_kept() -> None:
    loaded = make_model("llama")
    v = direction(loaded)
    foreign = loaded.layers[1].register_forward_hook(lambda m, a, o: None)
    counts = hook_counts(loaded)
    with pytest.raises(RuntimeError, match="boom"), steer(loaded, v, layer=1, coefficient=1.0, scale="absolute"):
        assert hook_counts(loaded) != counts
        raise RuntimeError("boom")
    assert hook_counts(loaded) == counts
    with pytest.raises(ConfigError):
        generate(loaded, ids_of(loaded), max_new_tokens=2, steering=[[Steer(v, 1, 1.0, scale="absolute")]] * 2)
    handle = SteeringHandle(loaded).set([Steer(v, 1, 1.0, scale="absolute")]).attach()
    handle.remove()
    handle.remove()  # idempotent
    assert hook_counts(loaded) == counts
    assert loaded.layers[1]._forward_hooks  # the foreign hook is still there
    foreign.remove()


def test_output_hidden_states_still_works_while_steering() -> None:
    loaded = make_model("llama")
    v = direction(loaded)
    batch = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        plain = loaded.model(batch, output_hidden_states=True).hidden_states
        with steer(loaded, v, layer=0, coefficient=1.0, scale="absolute"):
            steered = loaded.model(batch, output_hidden_states=True).hidden_states
    torch.testing.assert_close(steered[1] - plain[1], v.expand_as(plain[1]), atol=1e-5, rtol=1e-5)


def test_spread_units_use_the_recorded_spread() -> None:
    loaded = make_model("llama")
    acts = Activations(
        positive=torch.randn(6, 3, 32) + 1,
        negative=torch.randn(6, 3, 32),
        layers=(0, 1, 2),
        position="prefill-mean",
        model=loaded.describe(),
        trait="t/x",
        trait_hash="h",
        lines=tuple(range(6)),
    )
    vector = MeanDiff().fit(acts)
    s = Steer(vector, layer=2, coefficient=0.5)
    assert s.amount() == pytest.approx(0.5 * vector.spreads[2])
    with pytest.raises(ConfigError, match="scale='absolute'"):
        Steer(torch.ones(32), layer=1, coefficient=1.0)
    with pytest.raises(ConfigError, match="has no layer 7"):
        Steer(vector, layer=7, coefficient=1.0)


def test_effective_coherence_floor() -> None:
    from traitvec.stages.search import effective_floor

    assert effective_floor(70, 88.0) == (70, None)
    assert effective_floor(70, None) == (70, None)
    floor, note = effective_floor(70, 39.5)
    assert floor == pytest.approx(29.5) and "39.5" in note and "under the floor 70" in note
    assert effective_floor(70, 4.0)[0] == 0.0
    # a baseline whose coherence the judge scored on 2 of 10 answers says too little to lower the floor on
    floor, note = effective_floor(70, 39.5, scored=(2, 10))
    assert floor == 70 and "only 2 of 10" in note
    assert effective_floor(70, 39.5, scored=(8, 10))[0] == pytest.approx(29.5)
    assert effective_floor(70, 39.5, scored=(5, 10), min_scored=0.5)[0] == pytest.approx(29.5)


def _short_context_model(arch: str, context: int = 64):
    from tiny import make_config, make_tokenizer
    from transformers import AutoModelForCausalLM

    from traitvec.models import wrap_model

    config = make_config(arch)
    config.max_position_embeddings = context  # gpt2 maps this onto n_positions
    torch.manual_seed(0)
    return wrap_model(AutoModelForCausalLM.from_config(config), make_tokenizer(), name=f"tiny-{arch}-ctx{context}")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_prompt_longer_than_the_context_is_cut_to_its_end(arch: str, caplog: pytest.LogCaptureFixture) -> None:
    loaded = _short_context_model(arch)
    assert context_length(loaded) == 64
    short = ids_of(loaded, ["What causes rain?"])[0]
    long = list(loaded.tokenizer(" ".join(["The quick brown fox jumps over the lazy dog."] * 200))["input_ids"])
    assert len(long) > 1000
    with caplog.at_level("WARNING", logger="traitvec.generation"):
        out = generate(loaded, [short, long, "What causes rain? " * 300], max_new_tokens=8)
    bos = loaded.tokenizer.bos_token_id
    assert out[0].prompt_ids == tuple(short) and out[0].dropped == 0
    assert len(out[1].prompt_ids) == 64 - 8
    assert out[1].prompt_ids == (bos, *long[-(64 - 8 - 1) :])  # the BOS, then the end of the prompt
    assert out[1].dropped == len(long) - (64 - 8)
    assert len(out[2].prompt_ids) == 56 and out[2].prompt_ids[0] == bos and out[2].dropped > 500
    assert all(len(g.raw_tokens) == 8 or g.stopped for g in out)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings  # one warning per call, naming the prompts cut
    assert "2 prompt(s)" in warnings[0] and "prompt index 1, 2" in warnings[0] and "(64 tokens)" in warnings[0]


def test_max_new_tokens_that_fill_the_context_are_refused() -> None:
    loaded = _short_context_model("llama")
    with pytest.raises(ConfigError, match=r"generate\(max_new_tokens=\) = 63 leaves no room.*at most 62") as err:
        generate(loaded, ["What causes rain?"], max_new_tokens=63)
    assert err.value.setting == "generate(max_new_tokens=)"
    bos = loaded.tokenizer.bos_token_id
    assert bos not in range(5, 105)
    assert fit_context(loaded, list(range(5, 105)), 62) == ([103, 104], 98)  # two tokens of room: the end
    assert fit_context(loaded, [bos, *range(5, 105)], 62) == ([bos, 104], 99)  # a leading BOS is kept
    assert fit_context(loaded, [bos, 5, 6], 8) == ([bos, 5, 6], 0)
