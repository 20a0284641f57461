"""Adapter methods: how an adapter is attached to the frozen base, saved, loaded, and what it is made of.

Training, scoring, the loop and the CLI reach PEFT only through a method object here (or
`method_of(model)`, the method whose layers a model carries), so what is method-specific
lives in one place: its PEFT config, its parameter names, the B side that STAR decays,
the dropout that MC passes switch on, which layers fold into the base for a deterministic
pass, where BADGE takes its gradient, LoRA's fast forward (models/fast_lora.py), and the
learning rate it trains at when no one gives one. Full fine-tuning is a method too: a
trainable copy of the base. How a method's model is trained is engine/training.py
(`train_round`), which asks the method only whether it is an adapter.
A new PEFT method is one PeftMethod subclass and one line in ADAPTERS; its capabilities
(`is_adapter`, `has_dropout`, `decayed`) decide which STAR components a recipe may use
with it (strategies/registry.py Recipe.check).
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import torch

from star_al.config import ALL_LINEAR, LoraSettings
from star_al.errors import StarError
from star_al.files import write_json_atomic
from star_al.models.fast_lora import use_fast_lora
from star_al.registry import Registry


class PeftMethod:
    """What every PEFT adapter method shares; a subclass gives its PEFT config, its parts and capabilities."""

    name = ""
    is_adapter = True                     # a PEFT adapter on the frozen base (full fine-tuning is not)
    has_dropout = False                   # has dropout that MC passes can switch on
    decayed: str | None = None            # the parameters STAR's L2 decays (a name part); None: nothing to decay
    parameter_parts: tuple[str, ...] = ()  # name parts of the adapter's own parameters
    rank_one_gradient = False             # BADGE's gradient on its trained weight is an outer product g a^T
    default_learning_rate: float | None = None  # the rate it trains at unless one is given (None: the preset's)

    def peft_config(self, model, lora: LoraSettings):
        raise NotImplementedError

    def ready(self, peft_model):
        """The adapter as training and scoring run it (LoRA: the fast forward); PEFT's own by default."""
        return peft_model

    def owns(self, layer) -> bool:
        """Whether `layer` (a module of an adapted model) is one of this method's adapter layers."""
        return False

    def attach(self, model, lora: LoraSettings, seed: int, fast: bool = True):
        """Wrap the frozen base in a newly initialised adapter (seeded, no carry-over).

        `fast` gives it the method's `ready` forward; False keeps PEFT's own (the plain
        reference the bench compares with).
        """
        from peft import get_peft_model

        torch.manual_seed(seed)
        config = self.peft_config(model, lora)
        with warnings.catch_warnings():  # PEFT asks a transformers 5 model a deprecated question
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            peft_model = get_peft_model(model, config)
        return self.ready(peft_model) if fast else peft_model

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
        peft_model = self.ready(peft_model)
        peft_model.eval()
        self.to_base_dtype(peft_model)
        return peft_model

    def save(self, model, folder: str | Path, base_id: str | None) -> bool:
        """The adapter in PEFT's format, naming the base by its Hub id where one is known, so
        plain `PeftModel.from_pretrained` loads it on any machine (not a local cache path)."""
        folder = Path(folder)
        model.save_pretrained(folder)
        config_path = folder / "adapter_config.json"
        config = json.loads(config_path.read_text())
        config["base_model_name_or_path"] = base_id
        config["revision"] = config.get("revision")
        write_json_atomic(config_path, config)
        return True

    def to_base_dtype(self, model) -> None:
        """After training, hold the adapter in the base's dtype: scoring then runs without casts.

        Training keeps it (and AdamW's state) in fp32; inference in bf16 loses nothing
        that matters and avoids an fp32 copy of every projection's activations.
        """
        from peft.tuners.tuners_utils import BaseTunerLayer

        dtype = next(model.get_base_model().parameters()).dtype
        for layer in model.modules():
            if isinstance(layer, BaseTunerLayer):  # its adapter weights are what PEFT itself lists
                for attribute in layer.adapter_layer_names:
                    for param in getattr(layer, attribute).parameters():
                        if param.dtype != dtype:
                            param.data = param.data.to(dtype)

    def is_adapter_parameter(self, name: str) -> bool:
        return any(part in name for part in self.parameter_parts)

    def is_decayed(self, name: str) -> bool:
        """STAR's L2 decay acts on the B side only (docs/method.md 3.3); a method without one decays nothing."""
        return self.decayed is not None and self.decayed in name

    def dropout_modules(self, model) -> list[torch.nn.Module]:
        """The modules whose train mode switches the adapter's dropout on in MC passes (none by default)."""
        return []

    def mergeable_layers(self, model) -> list[torch.nn.Module]:
        """The layers whose adapter folds into the base weight for a deterministic pass (none by default)."""
        return []

    def trained_input(self, layer, x: torch.Tensor) -> torch.Tensor | None:
        """The input of the weight the adapter trains in `layer`, [rows, in] -> [rows, r]: what BADGE's
        gradient on that weight is an outer product with; None when it trains no such weight there."""
        return None

    def _drop_injected(self, base) -> None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        for name, module in list(base.named_modules()):
            if isinstance(module, BaseTunerLayer):
                parent = base.get_submodule(name.rpartition(".")[0]) if "." in name else base
                setattr(parent, name.rpartition(".")[2], module.get_base_layer())
        if hasattr(base, "peft_config"):
            del base.peft_config


class LoraMethod(PeftMethod):
    """LoRA (Hu et al. 2022), with star-al's fused forward and bit-mask dropout (models/fast_lora.py)."""

    name = "lora"
    title = "LoRA"
    has_dropout = True
    decayed = "lora_B"
    parameter_parts = ("lora_",)
    rank_one_gradient = True

    def peft_config(self, model, lora: LoraSettings, **options):
        from peft import LoraConfig

        targets = lora.target_modules
        return LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                          target_modules=ALL_LINEAR if targets == (ALL_LINEAR,) else list(targets),
                          task_type="CAUSAL_LM", **options)

    def ready(self, peft_model):
        return use_fast_lora(peft_model)

    def owns(self, layer) -> bool:
        return self._is_lora_layer(layer) and not self._is_dora_layer(layer)

    @staticmethod
    def _is_lora_layer(layer) -> bool:
        adapters = getattr(layer, "lora_A", None)
        return isinstance(adapters, torch.nn.ModuleDict) and len(adapters) > 0

    @staticmethod
    def _is_dora_layer(layer) -> bool:
        return any(getattr(layer, "use_dora", {}).values())

    def dropout_modules(self, model) -> list[torch.nn.Module]:
        """Each lora_dropout module with p > 0. A layer with a LoRA variant (DoRA) drops its
        inputs only while the layer itself is training (PEFT's DoraLinearVariant.forward), so
        for it the layer is switched, its dropout with it."""
        modules = []
        for module in model.modules():
            dropouts = getattr(module, "lora_dropout", None)
            if not isinstance(dropouts, torch.nn.ModuleDict):
                continue
            for adapter, dropout in dropouts.items():
                if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                    modules.append(module if adapter in getattr(module, "lora_variant", {}) else dropout)
        return modules

    def mergeable_layers(self, model) -> list[torch.nn.Module]:
        """Every LoRA layer PEFT can merge: W + s B A (DoRA's rescaled one too)."""
        return [module for module in model.modules()
                if hasattr(module, "base_layer") and hasattr(module, "merge") and getattr(module, "lora_A", None)]

    def trained_input(self, layer, x: torch.Tensor) -> torch.Tensor | None:
        """scaling * A x: LoRA's B is the trained weight, and A and the scaling feed it."""
        if not self._is_lora_layer(layer):
            return None
        name = layer.active_adapters[0]
        lora_a = layer.lora_A[name].weight
        return layer.scaling[name] * (x.to(lora_a.dtype) @ lora_a.T)


class DoraMethod(LoraMethod):
    """DoRA (Liu et al. 2024): LoRA's low-rank direction plus a learned magnitude per output; PEFT's forward.

    The fused LoRA forward does not apply: DoRA rescales W x + s B A x by m / ||W + s B A||
    per output, a norm over the merged weight that the fused addmm never forms. Its dropout
    is PEFT's nn.Dropout, switched on in MC passes through the layers (dropout_modules).
    """

    name = "dora"
    title = "DoRA"
    rank_one_gradient = False

    def peft_config(self, model, lora: LoraSettings, **options):
        return super().peft_config(model, lora, use_dora=True, **options)

    def ready(self, peft_model):
        return peft_model

    def owns(self, layer) -> bool:
        return self._is_lora_layer(layer) and self._is_dora_layer(layer)

    def trained_input(self, layer, x: torch.Tensor) -> torch.Tensor | None:
        if self._is_lora_layer(layer):
            raise StarError("badge: DoRA's gradient on B is not a rank-one outer product; use --peft lora or full")
        return None


class Ia3Method(PeftMethod):
    """(IA)^3 (Liu et al. 2022): learned vectors rescale keys, values and the FFN's inner activations.

    Rank, alpha and dropout do not apply: it has no low-rank matrices (so no B for
    STAR's L2 decay) and no dropout (so no MC passes). With the default target
    (all-linear) it scales what the paper scales, PEFT's modules for the architecture
    (k_proj, v_proj and down_proj's input for Llama); named targets are scaled on their
    output, or on their input where PEFT lists them as feed-forward (down_proj).
    """

    name = "ia3"
    title = "(IA)³"
    parameter_parts = ("ia3_",)
    # It rescales activations instead of adding a low-rank update, and learns nothing at
    # LoRA's rates: the preset's training runs at this rate (the command line and config
    # file still win). Measured on SmolLM2-135M/sst2 only (docs/method.md 3.5).
    default_learning_rate = 3e-2

    def ready(self, peft_model):
        """IA3 layers lack the `cast_input_dtype_enabled` flag that training's bf16 autocast
        turns off through peft.helpers.disable_input_dtype_casting; they never cast their
        inputs, so the flag is given to them, set as in every other PEFT layer."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        for module in peft_model.modules():
            if isinstance(module, BaseTunerLayer) and not hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = True
        return peft_model

    def owns(self, layer) -> bool:
        vectors = getattr(layer, "ia3_l", None)
        return isinstance(vectors, torch.nn.ParameterDict) and len(vectors) > 0

    def peft_config(self, model, lora: LoraSettings):
        from peft import IA3Config

        targets, feedforward = self._modules(model, lora)
        return IA3Config(target_modules=targets, feedforward_modules=feedforward, task_type="CAUSAL_LM")

    def check_targets(self, model, lora: LoraSettings) -> None:
        super().check_targets(model, lora)
        self._modules(model, lora)

    @staticmethod
    def _modules(model, lora: LoraSettings):
        """(target modules, feed-forward modules) for IA3Config on this model."""
        from peft.utils.constants import (TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FEEDFORWARD,
                                          TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TARGETS)

        model_type = getattr(getattr(model, "config", None), "model_type", None)
        feedforward = FEEDFORWARD.get(model_type) or []
        if tuple(lora.target_modules) != (ALL_LINEAR,):
            targets = list(lora.target_modules)
            return targets, [t for t in targets if isinstance(feedforward, list) and t in feedforward]
        if model_type not in TARGETS:
            raise StarError(f"ia3 knows no default modules for model type {model_type!r}; name them with "
                            "--target-modules (e.g. k_proj,v_proj,down_proj)")
        return TARGETS[model_type], feedforward


def full_copy(base_model):
    """A trainable fp32 copy of the frozen base, for full-parameter fine-tuning.

    The base stays untouched (every round starts from it); fp32 master weights keep
    AdamW's small updates from vanishing in bf16 rounding.
    """
    model = copy.deepcopy(base_model).float()
    model.requires_grad_(True)
    return model


class FullFineTuning:
    """Every weight trained, on an fp32 copy of the frozen base (the paper's Figure 1 contrast).

    The same operations as an adapter method: `attach` makes the copy, `detach` drops it;
    a full model per round is too big to keep, so nothing is saved and a resume trains the
    round again (same labels, same seed).
    """

    name = "full"
    is_adapter = False
    has_dropout = False
    decayed = None
    rank_one_gradient = True
    # Every weight moves, so a far smaller step than LoRA's: the rate on the preset's
    # schedule when the preset has no `full_train` of its own (config.py PRESETS).
    default_learning_rate = 1e-5

    def attach(self, model, lora, seed: int, fast: bool = True):
        torch.manual_seed(seed)
        return full_copy(model)

    def check_targets(self, model, lora) -> None:
        return None

    def detach(self, model):
        return None

    def save(self, model, folder, base_id) -> bool:
        return False

    def load(self, base, folder):
        raise StarError("full fine-tuning keeps no weights between rounds")


ADAPTERS: Registry[PeftMethod] = Registry("adapter method")
LORA = ADAPTERS.add("lora", LoraMethod())
ADAPTERS.add("dora", DoraMethod())
ADAPTERS.add("ia3", Ia3Method())
ADAPTERS.add("full", FullFineTuning())

# Named by users who expect them, and refused with the reason.
NOT_OFFERED = {name: f"{name} tuning is not offered: scoring and training feed left-padded batches with their "
                     "own position ids and reuse one KV cache of the prompts' shared opening (engine/scoring.py), "
                     "which PEFT's prompt-learning forward drops or replaces; choose one of " + ", ".join(ADAPTERS)
               for name in ("prefix", "prompt", "p_tuning")}


def adapter_method(name: str):
    """The method registered under `name` (a run's `finetune` setting), or a one-line StarError."""
    if name in NOT_OFFERED:
        raise StarError(NOT_OFFERED[name])
    return ADAPTERS.get(name)


def _layer_method(layer) -> PeftMethod | None:
    """The adapter method one of whose layers `layer` is, or None."""
    return next((method for _, method in ADAPTERS.items() if isinstance(method, PeftMethod) and method.owns(layer)),
                None)


def method_of(model) -> PeftMethod | None:
    """The adapter method whose layers `model` carries (its first adapter layer's); None for a model
    without any: the frozen base, or a fully fine-tuned copy."""
    return next((method for method in map(_layer_method, model.modules()) if method is not None), None)


def trained_input(layer, x: torch.Tensor) -> torch.Tensor | None:
    """The input of the weight trained in `layer`, [rows, in] -> [rows, r or in]: the adapter's
    (LoRA: scaling * A x, for the gradient on B), or x for a fully trained linear layer; None
    when nothing there is trained (a frozen weight, an IA3 vector)."""
    method = _layer_method(layer)
    if method is not None:
        return method.trained_input(layer, x)
    weight = getattr(layer, "weight", None)
    return x if weight is not None and weight.requires_grad else None


def saved_method(folder: str | Path) -> PeftMethod:
    """The method a saved adapter was trained with, read from its adapter_config.json.

    Anything but IA3 and DoRA loads as LoRA: LoRA's fast forward changes only plain
    LoRA layers, so another PEFT type keeps PEFT's own.
    """
    try:
        config = json.loads((Path(folder) / "adapter_config.json").read_text())
    except (OSError, ValueError):
        return LORA  # the load itself then says what is wrong
    if not isinstance(config, dict):
        return LORA
    if config.get("peft_type") == "IA3":
        return ADAPTERS.get("ia3")
    return ADAPTERS.get("dora") if config.get("use_dora") else LORA


def load_adapter(base, folder: str | Path):
    """A saved adapter of any method on the base, ready for inference (`star eval --adapter`)."""
    return saved_method(folder).load(base, folder)
