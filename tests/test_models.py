"""Experiment configs, layer discovery on tiny models of many architectures, and model loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny import ALL_ARCHITECTURES, make_model

from traitvec import ConfigError, ExperimentNotFoundError, ModelError, find_layers, load_experiment, load_model
from traitvec.experiments import list_experiments
from traitvec.layers import KNOWN_LAYER_PATHS
from traitvec.models import resolve_device, resolve_dtype


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
