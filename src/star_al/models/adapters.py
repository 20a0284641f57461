"""Adapter methods: how an adapter is attached to the frozen base, trained, saved and loaded.

The loop, training, scoring and the CLI reach PEFT's LoRA only through a method object
here, so what is LoRA-specific (its parameter names, the B side that STAR decays, the
dropout that MC passes switch on, the fast forward) lives in one place. A new PEFT
method is one class with these operations and one line in ADAPTERS.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from star_al.config import ALL_LINEAR, LoraSettings
from star_al.errors import StarError
from star_al.models.fast_lora import use_fast_lora
from star_al.registry import Registry


class LoraMethod:
    """PEFT's LoRA, with star-al's fused forward and bit-mask dropout (models/fast_lora.py)."""

    name = "lora"

    def attach(self, model, lora: LoraSettings, seed: int, fast: bool = True):
        """Wrap the frozen base in a newly initialised adapter (seeded, no carry-over).

        `fast` gives it `use_fast_lora`'s forward and dropout; False keeps PEFT's own (the
        plain reference the bench compares with).
        """
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(seed)
        targets = lora.target_modules
        config = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=ALL_LINEAR if targets == (ALL_LINEAR,) else list(targets),
                            task_type="CAUSAL_LM")
        with warnings.catch_warnings():  # PEFT asks a transformers 5 model a deprecated question
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            peft_model = get_peft_model(model, config)
        return use_fast_lora(peft_model) if fast else peft_model

    def check_targets(self, model, lora: LoraSettings) -> None:
        """Refuse target module names the model does not have, before anything is trained or written."""
        if tuple(lora.target_modules) == (ALL_LINEAR,):
            return
        names = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
        missing = [t for t in lora.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            available = sorted({n.rpartition(".")[2] for n in names})
            raise StarError(f"target module(s) {', '.join(missing)} not in the model; its linear layers are "
                            f"{', '.join(available)} (or all-linear)")

    def detach(self, peft_model):
        """Remove the adapter layers and give back the untouched frozen base model."""
        base = peft_model.unload()
        base.requires_grad_(False)
        base.eval()
        return base

    def load(self, base, folder: str | Path):
        """A saved adapter on the base, ready for inference; a damaged one raises a StarError
        and leaves the base as it was (PEFT injects layers before it reads the weights)."""
        from peft import PeftModel

        folder = Path(folder)
        if not (folder / "adapter_model.safetensors").is_file():
            raise StarError(f"adapter {folder}: no adapter_model.safetensors there "
                            "(adapters load from safetensors only, never pickles)")
        try:
            peft_model = PeftModel.from_pretrained(base, folder)
        except Exception as error:  # PEFT raises many kinds for a damaged or mismatched adapter
            self._drop_injected(base)
            raise StarError(f"adapter {folder} does not load ({type(error).__name__}: "
                            f"{str(error).splitlines()[0][:200]})") from error
        peft_model = use_fast_lora(peft_model)
        peft_model.eval()
        self.to_base_dtype(peft_model)
        return peft_model

    def train(self, model, base, tokenizer, task, examples, config, seed: int, desc: str | None, execution=None):
        """Fine-tune the attached adapter; STAR's decay (config.b_decay) acts on the B side."""
        from dataclasses import replace

        from star_al.engine.distributed import Execution
        from star_al.engine.training import train_adapter

        return train_adapter(model, tokenizer, task, examples, replace(config.train, b_decay=config.b_decay), seed,
                             desc=desc, execution=execution or Execution())

    def save(self, model, folder: str | Path, base_id: str | None) -> bool:
        """The adapter in PEFT's format, naming the base by its Hub id where one is known, so
        plain `PeftModel.from_pretrained` loads it on any machine (not a local cache path)."""
        folder = Path(folder)
        model.save_pretrained(folder)
        config_path = folder / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = base_id
        config["revision"] = config.get("revision")
        from star_al.al.run_dir import write_json_atomic

        write_json_atomic(config_path, config)
        return True

    def to_base_dtype(self, model) -> None:
        """After training, hold the adapter in the base's dtype: scoring then runs without casts.

        Training keeps it (and AdamW's state) in fp32; inference in bf16 loses nothing
        that matters and avoids an fp32 copy of every projection's activations.
        """
        dtype = next(model.get_base_model().parameters()).dtype
        for name, param in model.named_parameters():
            if self.is_adapter_parameter(name) and param.dtype != dtype:
                param.data = param.data.to(dtype)

    def is_adapter_parameter(self, name: str) -> bool:
        return "lora_" in name

    def is_decayed(self, name: str) -> bool:
        """STAR's L2 decay acts on LoRA B only (docs/method.md 3.3)."""
        return "lora_B" in name

    def dropout_modules(self, model) -> list[torch.nn.Module]:
        """The adapter's dropout modules that MC passes switch on (those with p > 0)."""
        return [module for name, module in model.named_modules()
                if "lora_dropout" in name and isinstance(module, torch.nn.Dropout) and module.p > 0]

    def _drop_injected(self, base) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        for name, module in list(base.named_modules()):
            if isinstance(module, BaseTunerLayer):
                parent = base.get_submodule(name.rpartition(".")[0]) if "." in name else base
                setattr(parent, name.rpartition(".")[2], module.get_base_layer())
        if hasattr(base, "peft_config"):
            del base.peft_config


class FullFineTuning:
    """Every weight trained, on an fp32 copy of the frozen base (the paper's Figure 1 contrast).

    The same operations as an adapter method: `attach` makes the copy, `detach` drops it;
    a full model per round is too big to keep, so nothing is saved and a resume trains the
    round again (same labels, same seed).
    """

    name = "full"

    def attach(self, model, lora, seed: int, fast: bool = True):
        from star_al.engine.training import full_copy

        torch.manual_seed(seed)
        return full_copy(model)

    def check_targets(self, model, lora) -> None:
        return None

    def detach(self, model):
        return None

    def train(self, model, base, tokenizer, task, examples, config, seed: int, desc: str | None, execution=None):
        from star_al.engine.distributed import Execution
        from star_al.engine.training import train_full

        return train_full(model, base.dtype, tokenizer, task, examples, config.train, seed, desc=desc,
                          execution=execution or Execution())

    def save(self, model, folder, base_id) -> bool:
        return False

    def load(self, base, folder):
        raise StarError("full fine-tuning keeps no weights between rounds")


ADAPTERS: Registry[LoraMethod] = Registry("adapter method")
LORA = ADAPTERS.add("lora", LoraMethod())
ADAPTERS.add("full", FullFineTuning())

attach_fresh_adapter = LORA.attach
check_target_modules = LORA.check_targets
detach_adapter = LORA.detach
load_adapter = LORA.load
adapter_to_base_dtype = LORA.to_base_dtype
