"""BADGE's gradient embedding on the adapter, from the scoring pass: no backward over the model.

BADGE (Ash et al. 2020) embeds a candidate by the loss gradient it would give, taking the
model's own answer as the label. Here the gradient is the one on the weight the adapter
trains in the last layer's down-projection: LoRA's B (its A and the base stay fixed), or
the whole weight under full fine-tuning. For one-token answers the answer position's loss
sees that projection's output only through position-wise maps: a post-MLP norm where the
architecture has one (Gemma), the residual add, the final norm and the head; no later
layer attends to it. So the gradient is the outer product g a^T of
  g: the loss gradient at the projection's output, by autograd through those small maps,
  a: the input of the trained weight at the answer position, scaling * A x for LoRA B
     (x for a full weight),
which forward hooks collect during the pass that computes the scores. The two factors are
kept, not their product (hidden x rank values per candidate): distances between rank-one
embeddings need only the factors' dot products (`strategies.diversity.RankOne`).
With MC passes each factor is the mean over the passes; with one pass the embedding is exact.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from star_al.errors import StarError
from star_al.models.adapters import trained_input


@dataclass(frozen=True)
class Tail:
    """The modules between the last layer's down-projection and the logits."""

    down_proj: torch.nn.Module
    post_norm: torch.nn.Module | None  # the norm on the MLP's output before the residual add (Gemma)
    final_norm: torch.nn.Module
    head: torch.nn.Module
    softcap: float | None              # final logit soft-capping (Gemma 2)


def tail_of(model) -> Tail:
    """The last decoder layer's mlp.down_proj and what follows it; a one-line refusal where the
    architecture does not have that shape."""
    try:
        decoder = model.get_decoder()
        layer = decoder.layers[-1]
        down_proj, final_norm = layer.mlp.down_proj, decoder.norm
    except (AttributeError, IndexError, TypeError):
        raise StarError(f"badge: no last-layer mlp.down_proj and final norm found in {type(model).__name__}; "
                        "the gradient embedding needs a Llama-style decoder") from None
    config = getattr(model, "config", None)
    return Tail(down_proj, getattr(layer, "post_feedforward_layernorm", None), final_norm,
                model.get_output_embeddings(), getattr(config, "final_logit_softcapping", None))


def check_gradient_embedding(model, method, target_modules) -> None:
    """Refuse, before a run starts, a setting whose gradient embedding cannot be taken: a `method`
    (models/adapters.py) whose trained weight's gradient is no outer product, or an adapter that
    leaves the last layer's down_proj alone."""
    tail_of(model)
    if not method.rank_one_gradient:
        raise StarError(f"badge: its gradient embedding is on LoRA B (or a full weight); --peft {method.name} has "
                        "no such rank-one gradient; use --peft lora or full")
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if method.is_adapter and not any(t in ("all-linear", "down_proj") or str(t).endswith(".down_proj")
                                     for t in targets):
        raise StarError(f"badge: the gradient embedding is on the last layer's down_proj LoRA B, and "
                        f"--target-modules {','.join(map(str, targets))} does not adapt down_proj "
                        "(add it, or use all-linear)")


@contextmanager
def tail_inputs(tail: Tail | None):
    """With a tail (of `tail_of`), collect at the last position of each forward: the down-projection's
    input "x" and output "o", and the final norm's input "h" (each [passes * batch, width])."""
    captured: dict[str, torch.Tensor] = {}
    if tail is None:
        yield captured
        return
    handles = [
        tail.down_proj.register_forward_hook(
            lambda module, args, output: captured.update(x=args[0][:, -1].detach(), o=output[:, -1].detach())),
        tail.final_norm.register_forward_pre_hook(lambda module, args: captured.update(h=args[0][:, -1].detach())),
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def gradient_factors(tail: Tail, captured: dict, label_ids) -> tuple[torch.Tensor, torch.Tensor]:
    """(g [rows, hidden], a [rows, r or in]) from one forward's captured tensors, a row per pass
    and example: the loss gradient at the down-projection's output and the trained weight's
    input. The loss is the cross-entropy over the allowed answers at the model's own (argmax)
    answer, as BADGE's hypothesised label."""
    with torch.inference_mode(False), torch.enable_grad():
        h = captured["h"].clone().requires_grad_(True)
        logits = tail.head(tail.final_norm(h))[:, list(label_ids)].float()
        if tail.softcap:
            logits = torch.tanh(logits / tail.softcap) * tail.softcap
        loss = torch.nn.functional.cross_entropy(logits, logits.argmax(-1), reduction="sum")
        (g,) = torch.autograd.grad(loss, h)
        if tail.post_norm is not None:
            o = captured["o"].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(tail.post_norm(o), o, grad_outputs=g)
        a = trained_input(tail.down_proj, captured["x"].clone())
    if a is None:
        raise StarError("badge: the last layer's down_proj has no LoRA B or trained weight to take the gradient on "
                        "(target it, e.g. --target-modules all-linear, and use --peft lora or full)")
    return g.detach(), a.detach()
