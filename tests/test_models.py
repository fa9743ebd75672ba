"""Experiment configs, layer discovery on tiny models of many architectures, model loading and its errors,
exact fingerprints and model keys, quantisation, adapters and thinking templates."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
from pathlib import Path

import pytest
import torch
from tiny import ALL_ARCHITECTURES, make_model

from traitvec import ConfigError, ExperimentNotFoundError, ModelError, find_layers, load_experiment, load_model
from traitvec._fingerprint import folder_digest, model_files
from traitvec._model_source import hub_unreachable, quantization_config
from traitvec.experiments import ExperimentConfig, list_experiments
from traitvec.layers import KNOWN_LAYER_PATHS
from traitvec.models import ModelPool, resolve_device, resolve_dtype, wrap_model


def _config(tmp_path: Path, text: str, name: str = "exp") -> Path:
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_config_reads_every_key(tmp_path: Path) -> None:
    root = _config(
        tmp_path,
        'model = "org/model"\ndtype = "bfloat16"\ndevice = "cuda:1"\ndevice_map = "auto"\nchat_template = true\n'
        'layers = [3, 5]\nlayers_path = "transformer.blocks"\nrevision = "main"\nmax_batch_tokens = 2048\n',
    )
    config = load_experiment("exp", root)
    assert (config.model, config.dtype, config.device, config.device_map) == ("org/model", "bfloat16", "cuda:1", "auto")
    assert config.chat_template is True and config.layers == (3, 5) and config.layers_path == "transformer.blocks"
    assert config.path == root / "exp" and config.to_dict()["layers"] == [3, 5]


def test_unknown_key_lists_the_valid_ones(tmp_path: Path) -> None:
    root = _config(tmp_path, 'model = "x/y"\nmodle = "typo"\n')
    with pytest.raises(ConfigError) as info:
        load_experiment("exp", root)
    message = str(info.value)
    assert "unknown key(s) modle" in message and "valid keys are model, dtype, device" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('model = "x/y"\ndtype = "fp8"\n', "dtype = 'fp8' is not one of auto, float32, bfloat16, float16"),
        ('model = "x/y"\ndevice = "tpu"\n', "device = 'tpu'; use auto, cpu, cuda, cuda:N or mps"),
        ('model = "x/y"\nlayers = [1, -2]\n', "layer indices are 0-based and >= 0"),
        ('model = "x/y"\nlayers = "all"\n', "use a list such as [4, 6, 8]"),
        ('dtype = "auto"\n', 'no "model" key'),
        ('model = "x/y"\nthis is not toml\n', "invalid TOML"),
        ('model = "x/y"\nchat_template = "yes"\n', "chat_template = 'yes'; use true or false"),
    ],
)
def test_bad_config_values(tmp_path: Path, text: str, expected: str) -> None:
    root = _config(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_experiment("exp", root)
    assert expected in str(info.value) and "config.toml" in str(info.value)


def test_missing_experiment_lists_the_known_ones(tmp_path: Path) -> None:
    root = _config(tmp_path, 'model = "x/y"\n', name="alpha")
    with pytest.raises(ExperimentNotFoundError) as info:
        load_experiment("beta", root)
    assert "experiments there: alpha" in str(info.value)
    assert list_experiments(root) == ["alpha"]
    with pytest.raises(ConfigError):
        load_experiment("../alpha", root)


def test_shipped_experiment_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[1] / "experiments"
    assert load_experiment("gemma-3-270m", root).model == "gemma-3-270m"
    smol = load_experiment("smollm2-135m-instruct", root)
    assert smol.model == "smollm2-135m-instruct" and smol.chat_template is True


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_layer_discovery(arch: str) -> None:
    loaded = make_model(arch, layers=3)
    layers, path = find_layers(loaded.model)
    assert len(layers) == 3 and path in KNOWN_LAYER_PATHS
    assert loaded.num_layers == 3 and loaded.hidden_size == 32
    assert all(type(layer).__name__.endswith(("DecoderLayer", "Block", "Layer")) for layer in layers)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma", "gpt2"])
def test_layer_discovery_through_peft(arch: str) -> None:
    peft = pytest.importorskip("peft")
    loaded = make_model(arch)
    target = ["c_attn"] if arch == "gpt2" else ["q_proj", "v_proj"]
    wrapped = peft.get_peft_model(loaded.model, peft.LoraConfig(r=2, target_modules=target))
    layers, _ = find_layers(wrapped)
    assert layers is find_layers(loaded.model)[0]


def test_unknown_architecture_error_says_how_to_fix() -> None:
    class Odd(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.trunk = torch.nn.Module()
            self.trunk.stack = torch.nn.ModuleList([torch.nn.Linear(2, 2) for _ in range(3)])

    with pytest.raises(ModelError) as info:
        find_layers(Odd())
    message = str(info.value)
    assert "Odd" in message and "trunk.stack (3)" in message and 'layers_path = "<path>"' in message
    layers, path = find_layers(Odd(), "trunk.stack")
    assert len(layers) == 3 and path == "trunk.stack"
    with pytest.raises(ModelError, match="not a non-empty nn.ModuleList"):
        find_layers(Odd(), "trunk")


@pytest.mark.parametrize("spec", ["no-such-model", "also/not/valid", "./missing-folder-xyz/"])
def test_unknown_model_is_a_model_error(spec: str) -> None:
    with pytest.raises(ModelError, match="unknown model|config.json"):
        load_model(spec)


def test_local_folder_round_trip(tmp_path: Path) -> None:
    tiny = make_model("qwen2")
    tiny.model.save_pretrained(tmp_path / "m")
    tiny.tokenizer.save_pretrained(tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"))
    assert loaded.num_layers == 3 and loaded.fingerprint.startswith("local-sha256:")
    ids = torch.tensor([[1, 20, 30, 40]])
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, tiny.model(ids).logits, atol=1e-6)


def test_device_and_dtype_resolution() -> None:
    expected = "cuda" if torch.cuda.is_available() else resolve_device("auto")
    assert resolve_device("auto") == expected
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("float16", "cpu") == torch.float16
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            resolve_device("cuda")


# --------------------------------------------------------------------------------------------
# fingerprints (issue 10.1) and model keys


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private traitvec cache folder (the fingerprint records go under it)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("TRAITVEC_CACHE", str(folder))
    return folder


def _checkpoint(tmp_path: Path, name: str, *, bump: float = 0.0, chat: bool = False) -> Path:
    """A saved tiny Llama wide enough that its last layer lies past the first MiB of the weights file."""
    tiny = make_model("llama", hidden=256, chat=chat)
    if bump:
        with torch.no_grad():
            tiny.model.model.layers[2].mlp.down_proj.weight[-1, -1] += bump
    folder = tmp_path / name
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    return folder


def _experiment(tmp_path: Path, text: str, name: str = "exp") -> ExperimentConfig:
    return load_experiment(name, _config(tmp_path / "experiments", text, name))


def test_checkpoints_that_differ_in_a_deep_layer_get_different_fingerprints(tmp_path: Path, cache: Path) -> None:
    early, late = _checkpoint(tmp_path, "checkpoint-500"), _checkpoint(tmp_path, "checkpoint-1000", bump=0.5)
    weights = (late / "model.safetensors").stat().st_size
    assert weights > 4 << 20  # the change sits well past the first MiB the old fingerprint read
    assert (early / "config.json").read_bytes() == (late / "config.json").read_bytes()
    first, second = load_model(str(early)).fingerprint, load_model(str(late)).fingerprint
    assert first.startswith("local-sha256:") and second.startswith("local-sha256:") and first != second
    assert load_model(str(early)).fingerprint == first


def test_folder_fingerprint_rereads_only_changed_files(tmp_path: Path, cache: Path) -> None:
    folder = _checkpoint(tmp_path, "m")
    first = folder_digest(folder)
    [record] = (cache / "fingerprints").glob("*.json")
    data = json.loads(record.read_text())
    assert data["folder"] == str(folder.resolve()) and "model.safetensors" in data["files"]
    assert sorted(data["files"]) == sorted(p.name for p in model_files(folder))
    # a cached digest is trusted while size and mtime match: plant a false one and it is used
    data["files"]["model.safetensors"]["sha256"] = "0" * 64
    record.write_text(json.dumps(data))
    planted = folder_digest(folder)
    assert planted != first
    # touching the file (new mtime) makes it rehashed, which restores the true fingerprint
    stat = (folder / "model.safetensors").stat()
    os.utime(folder / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert folder_digest(folder) == first


def test_files_that_do_not_change_outputs_are_not_fingerprinted(tmp_path: Path, cache: Path) -> None:
    folder = _checkpoint(tmp_path, "m")
    first = folder_digest(folder)
    (folder / "README.md").write_text("# my model\n", encoding="utf-8")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n", encoding="utf-8")
    assert folder_digest(folder) == first
    with open(folder / "tokenizer_config.json", "a", encoding="utf-8") as handle:
        handle.write("\n")
    assert folder_digest(folder) != first  # a tokenizer file changes tokens (and is hashed whole)


def test_in_memory_fingerprint_covers_every_value() -> None:
    a, b = make_model("llama"), make_model("llama")
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith("params-sha256:")
    with torch.no_grad():
        b.model.model.layers[2].mlp.down_proj.weight[-1, -1] += 1e-4  # past the first 16 values of any tensor
    assert wrap_model(b.model, b.tokenizer).fingerprint != a.fingerprint
    c = make_model("llama")
    c.model.model.rotary_emb.inv_freq.mul_(1.5)  # a buffer changes outputs too
    assert wrap_model(c.model, c.tokenizer).fingerprint != a.fingerprint


def test_pool_knows_a_local_models_fingerprint_and_key_without_loading_it(tmp_path: Path, cache: Path) -> None:
    folder = _checkpoint(tmp_path, "m", chat=True)
    config = _experiment(tmp_path, f'model = "{folder}"\n')
    pool = ModelPool()
    fingerprint, key = pool.fingerprint(config), pool.model_key(config)
    assert pool._models == {}  # nothing was loaded
    assert key["fingerprint"] == fingerprint and key["chat_template"] is True and key["dtype"] == "float32"
    loaded = pool.get(config)
    assert loaded.fingerprint == fingerprint and loaded.use_chat_template
    assert pool.model_key(config) == key  # the same key before and after loading
    assert ModelPool().model_key(config) == key


def test_model_key_changes_with_every_setting_that_changes_outputs(tmp_path: Path, cache: Path) -> None:
    folder = _checkpoint(tmp_path, "m", chat=True)
    pool = ModelPool()
    base = pool.model_key(_experiment(tmp_path, f'model = "{folder}"\n'))
    for extra in (
        "chat_template = false",
        'dtype = "bfloat16"',
        'layers_path = "model.layers"',
        'quantization = "4bit"',
        'revision = "v2"',
    ):
        key = pool.model_key(_experiment(tmp_path, f'model = "{folder}"\n{extra}\n', name=f"e{len(extra)}"))
        assert key != base, extra
    assert pool.model_key(_experiment(tmp_path, f'model = "{folder}"\nchat_template = true\n', name="t")) == base
    # enable_thinking changes nothing for a template that does not read it
    assert pool.model_key(_experiment(tmp_path, f'model = "{folder}"\nenable_thinking = true\n', name="k")) == base
    assert base["enable_thinking"] is None and base["adapter"] is None and base["quantization"] is None


def test_special_ids_include_added_tokens_flagged_special() -> None:
    from tokenizers import AddedToken

    loaded = make_model("llama")
    loaded.tokenizer.add_tokens([AddedToken("<|start_header_id|>", special=True), AddedToken("plainword")])
    header = loaded.tokenizer.convert_tokens_to_ids("<|start_header_id|>")
    plain = loaded.tokenizer.convert_tokens_to_ids("plainword")
    assert header not in loaded.tokenizer.all_special_ids  # how Llama-3 keeps its chat headers
    assert header in loaded.special_ids and plain not in loaded.special_ids
    assert loaded.tokenizer.bos_token_id in loaded.special_ids


# --------------------------------------------------------------------------------------------
# quantisation (12.2), adapters (12.3 / 11.3), thinking templates (12.4)


def test_quantization_config_key_and_error_on_this_machine(tmp_path: Path) -> None:
    config = _experiment(tmp_path, 'model = "x/y"\nquantization = "4bit"\ndtype = "bfloat16"\n')
    assert config.quantization == "4bit" and config.to_dict()["quantization"] == "4bit"
    with pytest.raises(ConfigError, match='quantization = .3bit.; use "8bit" or "4bit"'):
        _experiment(tmp_path, 'model = "x/y"\nquantization = "3bit"\n', name="bad")
    four = quantization_config("4bit", torch.bfloat16, check=False)
    assert four.load_in_4bit and not four.load_in_8bit and four.bnb_4bit_compute_dtype == torch.bfloat16
    eight = quantization_config("8bit", torch.float16, check=False)
    assert eight.load_in_8bit and not eight.load_in_4bit
    if torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes and a GPU are present: the error cannot happen here")
    with pytest.raises(ModelError) as info:
        load_model(str(_checkpoint(tmp_path, "q")), quantization="4bit")
    message = str(info.value)
    assert 'quantization = "4bit" cannot be used on this machine' in message
    if importlib.util.find_spec("bitsandbytes") is None:
        assert "pip install bitsandbytes" in message
    if not torch.cuda.is_available():
        assert "no CUDA GPU is visible" in message


def _adapter(tmp_path: Path) -> tuple[Path, Path]:
    """A saved tiny base model and a random (non-zero) LoRA adapter trained on nothing, made for it."""
    peft = pytest.importorskip("peft")
    base = _checkpoint(tmp_path, "base")
    model = load_model(str(base)).model
    lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    torch.manual_seed(3)
    wrapped = peft.get_peft_model(model, lora)
    wrapped.save_pretrained(tmp_path / "adapter")
    return base, tmp_path / "adapter"


def test_an_adapter_changes_outputs_and_fingerprint_and_reloads_the_same(tmp_path: Path, cache: Path) -> None:
    base, adapter = _adapter(tmp_path)
    plain = load_model(str(base))
    tuned = load_model(str(base), adapter=str(adapter))
    assert tuned.num_layers == 3 and tuned.layers_path == "model.layers"  # found through the PEFT wrapper
    assert type(tuned.model).__name__.startswith("Peft")
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    with torch.no_grad():
        assert float((tuned.model(ids).logits - plain.model(ids).logits).abs().max()) > 1e-3
    assert tuned.fingerprint.startswith(plain.fingerprint + "+adapter-sha256:")
    assert load_model(str(base), adapter=str(adapter)).fingerprint == tuned.fingerprint
    assert tuned.describe()["adapter"] == str(adapter)
    config = _experiment(tmp_path, f'model = "{base}"\nadapter = "{adapter}"\n')
    pool = ModelPool()
    key = pool.model_key(config)
    assert pool.fingerprint(config) == tuned.fingerprint and key["adapter"].startswith("sha256:")
    assert key != pool.model_key(_experiment(tmp_path, f'model = "{base}"\n', name="plain"))
    safetensors = next(adapter.glob("*.safetensors"))
    data = bytearray(safetensors.read_bytes())
    data[-1] ^= 0x01  # one bit of the adapter's weights
    safetensors.write_bytes(bytes(data))
    assert ModelPool().model_key(config)["adapter"] != key["adapter"]


def test_a_missing_adapter_folder_is_one_clear_error(tmp_path: Path) -> None:
    base = _checkpoint(tmp_path, "base")
    with pytest.raises(ModelError, match="is not a PEFT adapter folder \\(no adapter_config.json"):
        load_model(str(base), adapter=str(tmp_path / "nope"))


THINKING_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>"
    "{% if enable_thinking is defined and enable_thinking is false %}<think></think>{% endif %}{% endif %}"
)


def test_thinking_templates_get_enable_thinking_off_by_default() -> None:
    from traitvec.prompting import encode_chat

    tiny = make_model("llama", chat=True)
    tiny.tokenizer.chat_template = THINKING_TEMPLATE
    default = wrap_model(tiny.model, tiny.tokenizer, name="thinker")
    thinking = wrap_model(tiny.model, tiny.tokenizer, name="thinker", enable_thinking=True)
    off, on = encode_chat(default, "Why is the sky blue?"), encode_chat(thinking, "Why is the sky blue?")
    assert off != on
    assert tiny.tokenizer.decode(off).endswith("<|assistant|><think></think>")
    assert tiny.tokenizer.decode(on).endswith("<|assistant|>")
    assert default.describe()["enable_thinking"] is False and thinking.describe()["enable_thinking"] is True
    plain = make_model("llama", chat=True)
    assert plain.template_kwargs == {} and plain.describe()["enable_thinking"] is None


def test_thinking_setting_is_in_the_model_key_of_a_thinking_template(tmp_path: Path, cache: Path) -> None:
    folder = _checkpoint(tmp_path, "m", chat=True)
    (folder / "chat_template.jinja").write_text(THINKING_TEMPLATE, encoding="utf-8")
    pool = ModelPool()
    off = _experiment(tmp_path, f'model = "{folder}"\n')
    on = _experiment(tmp_path, f'model = "{folder}"\nenable_thinking = true\n', name="on")
    assert off.enable_thinking is False and pool.model_key(off)["enable_thinking"] is False
    assert pool.model_key(on)["enable_thinking"] is True
    loaded = pool.get(on)
    assert loaded.enable_thinking and loaded.template_kwargs == {"enable_thinking": True}
    assert pool.model_key(on)["enable_thinking"] is True


# --------------------------------------------------------------------------------------------
# roots (13.4) and an unreachable hub (13.12)


def test_missing_experiments_root_names_the_argument_and_the_current_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ExperimentNotFoundError) as info:
        load_experiment("exp", missing)
    message = str(info.value)
    assert info.value.setting == "load_experiment(root=)"
    assert f"load_experiment(root=) = {str(missing)!r} does not exist" in message
    assert f"relative path is taken from the current folder, {os.getcwd()}" in message
    with pytest.raises(ExperimentNotFoundError, match="list_experiments\\(root=\\)"):
        list_experiments(missing)


def test_an_unreachable_hub_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on: connections are refused at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert "cannot connect to 127.0.0.1" in (hub_unreachable() or "")
    with pytest.raises(ModelError) as info:
        load_model("traitvec-test-org/not-cached-anywhere")
    message = str(info.value)
    assert "\n" not in message and "the hub cannot be reached from this machine" in message
    assert "must be a local folder" in message and "gemma-3-270m" in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable() == "HF_HUB_OFFLINE is set"
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE is set"):
        load_model("traitvec-test-org/not-cached-anywhere")
