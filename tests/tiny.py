"""Tiny random-init models of real architectures and an in-process BPE tokenizer, for tests.

They build in milliseconds and exercise the same code paths as real models of their family.
"""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from traitvec.models import LoadedModel, wrap_model

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    'She said, "I genuinely think this will work out because the data looks promising."',
    "Our startup lost its biggest client last month, and I worried we could not recover.",
    "What are the main causes of species extinction? Habitat loss, climate change and disease.",
    "Question: How will the economy look next year?\nAnswer: Growth is expected to slow.",
    "1234567890 0 1 2 3 4 5 6 7 8 9 10 25 50 75 100",
    "Honestly, I have to admit the plan failed; we should have tested it earlier.",
    "The committee reviewed the proposal and approved the budget for the new library.",
] * 4

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

ARCHITECTURES = ("llama", "qwen2", "gemma", "gpt2")
ALL_ARCHITECTURES = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3_text",
    "gpt2",
    "gpt_neox",
    "phi",
    "phi3",
    "olmo",
    "olmo2",
)


@functools.cache
def _trained_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<bos>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", bos)]
    )
    return tok


def make_tokenizer(chat: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (vocab 400) that prepends ``<bos>``; with a chat template on request."""
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer().to_str()),
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|system|>", "<|end|>"],
    )
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_config(arch: str, *, layers: int = 3, hidden: int = 32, vocab: int = 400):
    """A tiny config of the given ``model_type``."""
    tok = make_tokenizer()
    common = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=hidden * 2,
        max_position_embeddings=256,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    if arch == "gpt2":
        return AutoConfig.for_model(
            "gpt2",
            vocab_size=vocab,
            n_embd=hidden,
            n_layer=layers,
            n_head=4,
            n_positions=256,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    extra: dict = {}
    if arch in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo", "olmo2"):
        extra["num_key_value_heads"] = 2
    if arch in ("gemma", "gemma2", "gemma3_text", "qwen3"):
        extra["head_dim"] = hidden // 4
    if arch == "gemma3_text":
        extra["sliding_window"] = 16
    if arch == "gpt_neox":
        extra["rotary_pct"] = 1.0
    return AutoConfig.for_model(arch, **common, **extra)


def make_model(
    arch: str = "llama",
    *,
    layers: int = 3,
    hidden: int = 32,
    seed: int = 0,
    chat: bool = False,
    dtype: torch.dtype = torch.float32,
) -> LoadedModel:
    """A random-init tiny model of ``arch`` wrapped as a :class:`LoadedModel`."""
    torch.manual_seed(seed)
    config = make_config(arch, layers=layers, hidden=hidden)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # Random init gives near-uniform logits; scale up the output head so greedy decoding has
    # clear winners and tests do not hinge on float ties.
    with torch.no_grad():
        head = model.get_output_embeddings()
        if head is not None and head.weight is not model.get_input_embeddings().weight:
            head.weight.mul_(8.0)
    return wrap_model(model, make_tokenizer(chat=chat), name=f"tiny-{arch}")
