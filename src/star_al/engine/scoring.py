"""Model work: answer likelihoods, greedy responses and their per-example uncertainties.

One pass over a set of examples yields everything both evaluation and acquisition need:
the predicted answer and its confidence, and the ME and PE scores (label-free, over the
model's own response; and PE over the gold response, for simulations). With
`passes` = K > 1 the LoRA dropout is switched on and the K stochastic passes run as
one batch of K copies of each row (MC dropout, docs/method.md 3.2); scores keep a leading
K axis and acquisition reduces it. On request (`ScoringOptions.embeddings`) the same
pass also keeps each example's last hidden state at the answer position, for the
diversity strategies, and (`ScoringOptions.gradients`) the factors of BADGE's gradient
embedding on the adapter (engine/gradients.py; docs/method.md 9).
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from star_al.data.batching import encode_pair, encode_prompt, left_pad, length_buckets
from star_al.data.tasks import CHOICE
from star_al.engine.choices import candidate_measures
from star_al.engine.distributed import SINGLE, Processes
from star_al.engine.gradients import gradient_factors, tail_inputs, tail_of
from star_al.engine.heap import HeapGuard
from star_al.engine.uncertainty import logprob_entropy, token_entropy, token_nll
from star_al.errors import StarError
from star_al.log import quiet
from star_al.models.adapters import method_of
from star_al.models.fast_lora import mask_draws_per_forward, skip_mask_draws


@dataclass
class Scores:
    """Per-example results of scoring; uncertainty arrays have shape [passes, n]."""

    ids: list[int]
    predictions: list[str | None]
    golds: list[str]
    correct: np.ndarray
    confidence: np.ndarray
    me: np.ndarray
    pe: np.ndarray
    pe_gold: np.ndarray | None
    responses: list[str] | None = None  # generated text, for number and text tasks
    label_probs: np.ndarray | None = None  # [n, n_labels]: allowed-label probabilities (label tasks)
    embeddings: np.ndarray | None = None   # [n, hidden]: answer-position hidden states, when asked
    gradients: tuple[np.ndarray, np.ndarray] | None = None  # BADGE's (g [n, hidden], a [n, r]), when asked
    correct_norm: np.ndarray | None = None  # choice tasks: right by log-likelihood per character (lm-eval's acc_norm)
    candidate_logprobs: list[np.ndarray] | None = None  # choice tasks: each candidate's log-likelihood, per example


PASS_MEASURES = ("me", "pe", "pe_gold")  # the uncertainty measures: one row per pass, [passes, n]


def measures(scores: Scores, needs) -> dict[str, np.ndarray]:
    """What acquisition reads of a scoring pass, by name (strategies/base.py `Scorer`): "me", "pe" and,
    where scored, "pe_gold", each [passes, n]; with `needs.embeddings` the answer-position hidden
    states "embeddings" [n, hidden]; with `needs.answer_probs` the allowed answers' probabilities
    "label_probs" [n, n_labels] (tasks with fixed answers); with `needs.gradients` BADGE's factors
    "gradient_g" [n, hidden] and "gradient_a" [n, r]. `needs` is a strategies.base.Needs."""
    measured = {"me": scores.me, "pe": scores.pe}
    if scores.pe_gold is not None:
        measured["pe_gold"] = scores.pe_gold
    if needs.embeddings:
        measured["embeddings"] = scores.embeddings
    if needs.answer_probs and scores.label_probs is not None:
        measured["label_probs"] = scores.label_probs
    if needs.gradients:
        measured["gradient_g"], measured["gradient_a"] = scores.gradients
    return measured


def one_pass(measured: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A measures dict of one pass, as the base model's scores are kept: each measure's first
    row ([n]), everything else as it is."""
    return {key: value[0] if key in PASS_MEASURES else value for key, value in measured.items()}


def select_rows(measured: dict[str, np.ndarray], rows: np.ndarray, needs) -> dict[str, np.ndarray]:
    """What `needs` reads of a measures dict, at the examples `rows`: its tuned measures,
    [passes, len(rows)] (a measure kept as one pass, [n], gets its pass axis back), and with
    `needs.embeddings` the hidden states [len(rows), hidden]."""
    selected = {}
    for key in needs.tuned:
        value = measured[key]
        selected[key] = (value if value.ndim == 2 else value[None])[:, rows]
    if needs.embeddings:
        selected["embeddings"] = measured["embeddings"][rows]
    return selected


@contextmanager
def mc_dropout_active(model):
    """Put exactly the adapter's dropout modules in training mode (its method's dropout_modules).

    PEFT turns LoRA dropout off in eval(), and Llama-style backbones have no other
    dropout, so without this "K MC passes" would be K identical passes.
    """
    method = method_of(model)
    modules = method.dropout_modules(model) if method is not None else []
    if not modules:
        raise StarError("MC dropout needs a LoRA adapter with dropout > 0 (--lora-dropout)")
    for module in modules:
        module.train()
    try:
        yield
    finally:
        for module in modules:
            module.eval()


@contextmanager
def merged_adapter(model):
    """Fold the adapter into the base weights for deterministic passes (the layers its method
    can merge: LoRA's and DoRA's), then put the base weights back bit for bit.

    An unmerged adapter adds two small matmuls, a scaling and an add per projection; merged,
    a pass costs what the base model costs. Only fp32 bases are merged: in bf16 the sum
    W + sBA rounds away much of a small LoRA update (measured on SmolLM2/sst2: 64.6% vs
    60.8% accuracy for the same adapter). Unmerging would not give back W bit for bit
    either, so the exact originals are kept aside and restored.
    """
    method = method_of(model)
    layers = method.mergeable_layers(model) if method is not None else []
    if (not layers or not hasattr(model, "merge_adapter")
            or layers[0].base_layer.weight.dtype != torch.float32):
        yield model
        return
    originals = [layer.base_layer.weight.data.clone() for layer in layers]
    model.merge_adapter()
    try:
        yield model
    finally:
        model.unmerge_adapter()
        for layer, weight in zip(layers, originals):
            layer.base_layer.weight.data.copy_(weight)


@dataclass(frozen=True)
class SharedPrefix:
    """The KV cache of the tokens every prompt of a scoring call starts with.

    Task prompts open with the same instruction (a third of a BoolQ prompt's tokens):
    its keys and values are computed once per call, one row per MC pass so that each
    pass draws its own dropout noise on it, and each batch only runs its own tokens.
    Within one pass every example then sees the same noise on the prefix: each
    example's K samples keep the distribution of independent passes.
    """

    length: int
    cache: object  # a transformers Cache whose batch rows are the passes


MIN_SHARED_PREFIX = 8  # below this, the copy of the cache per batch costs about what it saves


def shared_prefix_length(prompts: list[list[int]], batches: list[list[int]]) -> int:
    """How many leading tokens every prompt shares, one short of the shortest.

    0 when it would not pay off: a prefix shorter than MIN_SHARED_PREFIX, or a call of
    one batch (the cache would be used once).
    """
    if len(batches) < 2:
        return 0
    length = min(len(os.path.commonprefix(prompts)), min(len(p) for p in prompts) - 1)
    return length if length >= MIN_SHARED_PREFIX else 0


def shared_prefix(model, prompts: list[list[int]], passes: int, batches: list[list[int]]) -> SharedPrefix | None:
    """The cached common token prefix of `prompts`, or None when it would not pay off.

    The prefix stops one token short of the shortest prompt, so the position that
    predicts the answer is always computed per example.
    """
    length = shared_prefix_length(prompts, batches)
    if length == 0:
        return None
    device = next(model.parameters()).device
    ids = torch.tensor([prompts[0][:length]], device=device).repeat(passes, 1)
    # No logits at all (an empty index list): the head on one row made torch copy the
    # whole vocabulary matrix, 2% of a BoolQ pass.
    output = model(input_ids=ids, use_cache=True, logits_to_keep=torch.empty(0, dtype=torch.long, device=device))
    cache = output.get(cache_argument())
    if not hasattr(cache, "batch_repeat_interleave"):
        return None
    return SharedPrefix(length, cache)


@functools.cache
def cache_argument() -> str:
    """What causal LMs call their KV cache: `cache` in transformers 5.2x, `past_key_values` before.

    Looked up on first use: importing the model class takes seconds, which commands that
    never run a model (`star probe entropy`) should not pay.
    """
    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


def _forward_tail(model, sequences, pad_id, keep: int, passes: int, prefix: SharedPrefix | None = None):
    """Logits of the last `keep` positions, shape [passes, batch, keep, vocab].

    Rows are pass-major (all of pass 0, then pass 1, ...). With a shared prefix only the
    rest of each sequence runs, left-padded after the cached prefix, with positions
    continuing from it; the logits are those of the whole sequences.
    """
    device = next(model.parameters()).device
    start = prefix.length if prefix is not None else 0
    input_ids, attention_mask, position_ids = left_pad([seq[start:] for seq in sequences], pad_id, device)
    if passes > 1:
        input_ids, attention_mask, position_ids = (
            t.repeat(passes, 1) for t in (input_ids, attention_mask, position_ids))
    extra = {"use_cache": False}
    if prefix is not None:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(len(sequences))
        attention_mask = torch.cat([attention_mask.new_ones(attention_mask.shape[0], start), attention_mask], 1)
        position_ids = position_ids + start
        extra = {"use_cache": True, cache_argument(): cache}
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=keep, **extra).logits
    return logits.view(passes, len(sequences), keep, -1)


@contextmanager
def head_inputs(model, enabled: bool):
    """Collect what the output head reads while enabled: the last hidden states of the kept positions.

    A hook on the head's input, not `output_hidden_states`, which would keep every
    layer's states at every position; each call appends [passes * batch, keep, hidden].
    """
    captured: list[torch.Tensor] = []
    if not enabled:
        yield captured
        return
    handle = model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: captured.append(args[0].detach()))
    try:
        yield captured
    finally:
        handle.remove()


def _pass_mean(hidden: torch.Tensor, passes: int) -> np.ndarray:
    """[passes * batch, hidden] in pass-major rows -> [batch, hidden], the mean over the passes."""
    return hidden.float().view(passes, -1, hidden.shape[-1]).mean(0).cpu().numpy()


def _single_token_ids(tokenizer, prompt: str, continuations: list[str]) -> list[int] | None:
    """The one token each continuation is, if every one is a single token, else None."""
    ids = [encode_pair(tokenizer, prompt, text).target_ids for text in continuations]
    return [seq[0] for seq in ids] if all(len(seq) == 1 for seq in ids) else None


def one_token_answers(tokenizer, task, prompt: str) -> bool:
    """Whether every allowed answer of a label task is a single token after this prompt."""
    return _single_token_ids(tokenizer, prompt, [task.label_target(label) for label in task.labels]) is not None


def run_batches(model, batches: list[list[int]], work, processes: Processes = SINGLE, desc=None,
                runs_model=lambda batch: True) -> list:
    """work(batch) for every batch, in order: this process computes its share, the rest is gathered.

    Every process walks all batches; one that leaves a batch to another steps torch's
    generator past that batch's dropout-mask seeds, so each batch is computed with the
    masks (and the batch-mates) it has in a single process, and 1 or N processes give
    the same MC-dropout scores. The batches themselves are made from the whole list.
    runs_model(batch) is how many forward passes work() makes for a batch (True: one; False: none,
    a batch it answers without the model).
    What each batch freed goes back to the OS (engine/heap.py): batch shapes vary, and
    glibc would otherwise keep about a vocabulary row's worth of heap per example scored.
    """
    heap = HeapGuard()
    mine = set(processes.share(len(batches)))
    draws = mask_draws_per_forward(model) if processes.world > 1 else 0
    results = {}
    for position, batch in enumerate(tqdm(batches, desc=desc, disable=desc is None or quiet(), leave=False)):
        if position in mine:
            results[position] = work(batch)
            heap.after_batch()
        else:
            skip_mask_draws(draws * int(runs_model(batch)))
    return processes.gather(results, len(batches))


@torch.inference_mode()
def next_token_stats(model, prompt_ids, label_token_ids, pad_id, batch_size, passes=1, desc=None,
                     processes: Processes = SINGLE, embeddings=None, gradients=None):
    """Log-probabilities of the label tokens and full-vocabulary entropy after each prompt.

    Returns ([passes, n, n_labels], [passes, n]). Only the last position's logits are
    computed, since one-token answers need nothing else. An `embeddings` array [n, hidden]
    is filled with the last hidden state at that position (the mean over the passes); a
    `gradients` dict gets "g" and "a", BADGE's gradient factors (engine/gradients.py).
    """
    n = len(prompt_ids)
    label_logprobs = np.zeros((passes, n, len(label_token_ids)), dtype=np.float64)
    entropy = np.zeros((passes, n), dtype=np.float64)
    label_index = torch.tensor(label_token_ids)
    batches = length_buckets([len(p) for p in prompt_ids], batch_size)
    prefix = shared_prefix(model, prompt_ids, passes, batches)
    tail = tail_of(model) if gradients is not None else None  # what BADGE's gradient runs through

    def work(batch):
        with head_inputs(model, embeddings is not None) as hidden, tail_inputs(tail) as captured:
            logits = _forward_tail(model, [prompt_ids[i] for i in batch], pad_id, 1, passes, prefix)[:, :, 0]
        embedded = _pass_mean(hidden[0][:, -1], passes) if hidden else None
        factors = (tuple(_pass_mean(part, passes) for part in gradient_factors(tail, captured, label_token_ids))
                   if captured else None)
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        return (logprobs[..., label_index.to(logits.device)].cpu().double().numpy(),
                logprob_entropy(logprobs).cpu().double().numpy(), embedded, factors)

    for batch, (batch_logprobs, batch_entropy, embedded, factors) in zip(
            batches, run_batches(model, batches, work, processes, desc)):
        label_logprobs[:, batch], entropy[:, batch] = batch_logprobs, batch_entropy
        if embedded is not None:
            embeddings[batch] = embedded
        if factors is not None:
            for key, part in zip("ga", factors):
                gradients.setdefault(key, np.zeros((n, part.shape[1]), dtype=np.float32))[batch] = part
    return label_logprobs, entropy


@torch.inference_mode()
def response_stats(model, prompt_ids, response_ids, pad_id, batch_size, passes=1, desc=None,
                   processes: Processes = SINGLE, embeddings=None):
    """Teacher-forced sums over each response's tokens: (-log p(s|x), sum of entropies).

    Returns two arrays [passes, n]. Logits are computed only at the positions that
    predict response tokens (the last len(response)+1 columns under left padding). An
    `embeddings` array [n, hidden] is filled with the last hidden state at the prompt's
    last token, the position that predicts the response (the mean over the passes).
    """
    n = len(prompt_ids)
    nll = np.zeros((passes, n), dtype=np.float64)
    entropy = np.zeros((passes, n), dtype=np.float64)
    lengths = [len(p) + len(r) for p, r in zip(prompt_ids, response_ids)]
    batches = length_buckets(lengths, batch_size)
    prefix = shared_prefix(model, prompt_ids, passes, batches)

    def work(batch):
        responses = [response_ids[i] for i in batch]
        width = max(len(r) for r in responses)
        if width == 0 and embeddings is None:
            return np.zeros((passes, len(batch))), np.zeros((passes, len(batch))), None
        sequences = [prompt_ids[i] + response_ids[i] for i in batch]
        with head_inputs(model, embeddings is not None) as hidden:
            logits = _forward_tail(model, sequences, pad_id, width + 1, passes, prefix)[:, :, :-1]
        embedded = None
        if hidden:
            answer_at = torch.tensor([width - len(r) for r in responses], device=hidden[0].device)
            embedded = _pass_mean(hidden[0][torch.arange(len(batch) * passes, device=answer_at.device),
                                             answer_at.repeat(passes)], passes)
        targets = torch.zeros((len(batch), width), dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, response in enumerate(responses):
            if response:
                targets[row, width - len(response):] = torch.tensor(response)
                mask[row, width - len(response):] = True
        targets, mask = targets.to(logits.device), mask.to(logits.device)
        token_nlls = token_nll(logits, targets.expand(passes, -1, -1))
        token_entropies = token_entropy(logits)
        return ((token_nlls * mask).sum(-1).cpu().double().numpy(),
                (token_entropies * mask).sum(-1).cpu().double().numpy(), embedded)

    runs_model = lambda batch: embeddings is not None or any(response_ids[i] for i in batch)  # noqa: E731
    for batch, (batch_nll, batch_entropy, embedded) in zip(batches, run_batches(model, batches, work, processes,
                                                                                 desc, runs_model)):
        nll[:, batch], entropy[:, batch] = batch_nll, batch_entropy
        if embedded is not None:
            embeddings[batch] = embedded
    return nll, entropy


def _prompt_cache(model, heads: list[list[int]], pad_id, passes: int, prefix: SharedPrefix | None):
    """The KV cache of `heads` (each prompt but its last token, past the shared prefix), rows
    pass-major, and the attention mask over the cached positions [passes * len(heads), cached].
    The cache is None when nothing is cached (one-token prompts and no shared prefix)."""
    device = next(model.parameters()).device
    start = prefix.length if prefix is not None else 0
    cache = None
    if prefix is not None:
        cache = copy.deepcopy(prefix.cache)
        cache.batch_repeat_interleave(len(heads))
    past_mask = torch.ones((passes * len(heads), start), dtype=torch.long, device=device)
    if max(len(head) for head in heads) == 0:
        return cache, past_mask
    input_ids, attention_mask, position_ids = (t.repeat(passes, 1) for t in left_pad(heads, pad_id, device))
    past_mask = torch.cat([past_mask, attention_mask], 1)
    output = model(input_ids=input_ids, attention_mask=past_mask, position_ids=position_ids + start, use_cache=True,
                   logits_to_keep=torch.empty(0, dtype=torch.long, device=device),
                   **({cache_argument(): cache} if cache is not None else {}))
    return output.get(cache_argument()), past_mask


@torch.inference_mode()
def candidate_stats(model, prompt_ids, candidate_ids, pad_id, batch_size, passes=1, desc=None,
                    processes: Processes = SINGLE, embeddings=None) -> np.ndarray:
    """Each candidate continuation's summed log-likelihood after its prompt, [passes, n, k]
    (k the most candidates of any example; -inf past an example's own).

    Per batch the prompts run once, all but their last token, into a KV cache (after the
    prefix every prompt shares, cached once per call); then every candidate runs on its
    prompt's cache, led by the prompt's last token, which predicts its first token: a 4-choice
    question costs one prompt and four short continuations, not four prompts. A batch holds
    about `batch_size` candidates. An `embeddings` array [n, hidden] is filled with the
    hidden state at the prompt's last token (the mean over the passes).
    """
    n, most = len(prompt_ids), max(len(c) for c in candidate_ids)
    logliks = np.full((passes, n, most), -np.inf)
    batches = length_buckets([len(p) for p in prompt_ids], max(1, batch_size // most))
    prefix = shared_prefix(model, prompt_ids, passes, batches)
    start = prefix.length if prefix is not None else 0
    heads = [p[start:-1] for p in prompt_ids]

    def work(batch):
        cache, past_mask = _prompt_cache(model, [heads[i] for i in batch], pad_id, passes, prefix)
        rows = [(p, b, j) for p in range(passes) for b, i in enumerate(batch) for j in range(len(candidate_ids[i]))]
        targets = [candidate_ids[batch[b]][j] for _, b, j in rows]
        width = max(1, max(len(t) for t in targets))
        device = past_mask.device
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        target_ids = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ((_, b, _), target) in enumerate(zip(rows, targets)):
            tokens = [prompt_ids[batch[b]][-1]] + target[:-1]  # right-padded: the cache sits on the left
            input_ids[row, :len(tokens)], mask[row, :len(tokens)] = torch.tensor(tokens), 1
            target_ids[row, :len(target)] = torch.tensor(target, dtype=torch.long)
        cached_row = torch.tensor([p * len(batch) + b for p, b, _ in rows], device=device)
        starts = torch.tensor([len(prompt_ids[batch[b]]) - 1 for _, b, _ in rows])
        extra = {}
        if cache is not None:
            cache.reorder_cache(cached_row)
            extra = {cache_argument(): cache}
        with head_inputs(model, embeddings is not None) as hidden:
            logits = model(input_ids=input_ids.to(device),
                           attention_mask=torch.cat([past_mask[cached_row], mask.to(device)], 1),
                           position_ids=(starts[:, None] + torch.arange(width)).to(device), use_cache=True,
                           **extra).logits
        scored = torch.tensor([[k < len(t) for k in range(width)] for t in targets], device=device)
        sums = -(token_nll(logits, target_ids.to(device)) * scored).sum(-1).cpu().double().numpy()
        embedded = None
        if hidden:
            first = [row for row, (_, _, j) in enumerate(rows) if j == 0]  # pass-major, one per example
            embedded = _pass_mean(hidden[0][first, 0], passes)
        return rows, sums, embedded

    forwards = lambda batch: 1 + (max(len(heads[i]) for i in batch) > 0)  # noqa: E731
    for batch, (rows, sums, embedded) in zip(batches, run_batches(model, batches, work, processes, desc, forwards)):
        for (p, b, j), value in zip(rows, sums):
            logliks[p, batch[b], j] = value
        if embedded is not None:
            embeddings[batch] = embedded
    return logliks


class _AnswerComplete:
    """Stop each sequence once the task says its generated text holds a full answer."""

    def __init__(self, tokenizer, prompt_width: int, answer_complete):
        self.tokenizer, self.prompt_width, self.answer_complete = tokenizer, prompt_width, answer_complete

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_width:], skip_special_tokens=True)
        return torch.tensor([self.answer_complete(text) for text in texts], device=input_ids.device)


@torch.inference_mode()
def generate_greedy(model, tokenizer, prompt_ids, max_new_tokens, batch_size, answer_complete=None,
                    desc=None, processes: Processes = SINGLE) -> list[list[int]]:
    """Batched greedy decoding with the KV cache; each sequence stops at EOS or a complete answer."""
    from transformers import StoppingCriteriaList

    responses: list[list[int]] = [[] for _ in prompt_ids]
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    batches = length_buckets([len(p) for p in prompt_ids], batch_size)

    def work(batch):
        input_ids, attention_mask, _ = left_pad([prompt_ids[i] for i in batch], tokenizer.pad_token_id, device)
        stopping = StoppingCriteriaList()
        if answer_complete is not None:
            stopping.append(_AnswerComplete(tokenizer, input_ids.shape[1], answer_complete))
        output = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                                max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=eos, stopping_criteria=stopping,
                                temperature=None, top_p=None, top_k=None)
        generated = []
        for row in range(len(batch)):
            new_tokens = output[row, input_ids.shape[1]:].tolist()
            if eos in new_tokens:
                new_tokens = new_tokens[: new_tokens.index(eos)]
            while new_tokens and new_tokens[-1] == tokenizer.pad_token_id:
                new_tokens.pop()
            generated.append(new_tokens)
        return generated

    for batch, generated in zip(batches, run_batches(model, batches, work, processes, desc)):
        for index, new_tokens in zip(batch, generated):
            responses[index] = new_tokens
    return responses


@dataclass(frozen=True)
class ScoringOptions:
    """How to score: batch size, MC passes, whether gold-response PE is needed, token caps."""

    batch_size: int = 32
    passes: int = 1
    gold_pe: bool = False
    max_prompt_tokens: int = 1024
    generation_batch_size: int = 16
    processes: Processes = SINGLE  # the batches are shared out among these (engine.distributed)
    embeddings: bool = False  # also keep the answer position's last hidden state (Scores.embeddings)
    gradients: bool = False   # also keep BADGE's gradient factors (Scores.gradients; one-token labels)


def run_scoring_options(config, passes: int = 1, gold_pe: bool = False, embeddings: bool = False,
                        processes: Processes = SINGLE, gradients: bool = False) -> ScoringOptions:
    """How a run scores: its batch size and prompt cut, with `passes` (MC dropout), gold PE,
    hidden states and gradient embeddings as asked."""
    return ScoringOptions(batch_size=config.score_batch_size, passes=passes, gold_pe=gold_pe,
                          max_prompt_tokens=config.train.max_prompt_tokens, embeddings=embeddings,
                          processes=processes, gradients=gradients)


def score_examples(model, tokenizer, task, examples, options: ScoringOptions, desc=None) -> Scores:
    """Predictions, confidences and ME/PE scores for examples under the current model."""
    if not examples:
        raise StarError("nothing to score: the example list is empty")
    if options.passes == 1:
        with merged_adapter(model):
            return _score(model, tokenizer, task, examples, options, desc, nullcontext())
    return _score(model, tokenizer, task, examples, options, desc, mc_dropout_active(model))


def _score(model, tokenizer, task, examples, options: ScoringOptions, desc, mc) -> Scores:
    gradients = {} if options.gradients else None
    scores, hidden = _score_and_embed(model, tokenizer, task, examples, options, desc, mc, gradients)
    scores.embeddings = hidden
    if gradients is not None:
        scores.gradients = (gradients["g"], gradients["a"])
    return scores


def _score_and_embed(model, tokenizer, task, examples, options: ScoringOptions, desc, mc, gradients=None):
    """The scores, and the answer-position hidden states [n, hidden] when asked (else None);
    a `gradients` dict gets BADGE's gradient factors."""
    prompts = [encode_prompt(tokenizer, ex.prompt, options.max_prompt_tokens) for ex in examples]
    golds = [ex.gold for ex in examples]
    pad = tokenizer.pad_token_id
    hidden = (np.zeros((len(examples), model.get_output_embeddings().in_features), dtype=np.float32)
              if options.embeddings else None)
    if task.answer_type == "label":
        continuations = [task.label_target(label) for label in task.labels]
        single = _single_token_ids(tokenizer, examples[0].prompt, continuations)
        if single is not None:
            with mc:
                label_logprobs, me = next_token_stats(model, prompts, single, pad, options.batch_size,
                                                      options.passes, desc, options.processes, hidden, gradients)
            return _label_scores(task, examples, label_logprobs, me, golds), hidden
    if gradients is not None:
        raise StarError(f"badge needs a task whose answers are one token each; {task.name}'s are not")
    if task.answer_type == CHOICE:
        return _choice_scores(model, tokenizer, task, examples, prompts, options, desc, mc, hidden), hidden
    if task.answer_type == "label":
        return _multi_token_label_scores(model, tokenizer, task, examples, prompts, continuations,
                                         options, desc, mc, hidden), hidden
    responses = generate_greedy(model, tokenizer, prompts, task.max_new_tokens,
                                options.generation_batch_size, task.answer_complete,
                                desc and f"{desc} (generate)", options.processes)
    with mc:
        pe, me = response_stats(model, prompts, responses, pad, options.generation_batch_size,
                                options.passes, desc and f"{desc} (score)", options.processes, hidden)
        pe_gold = None
        if options.gold_pe:
            gold_ids = [encode_pair(tokenizer, ex.prompt, ex.target, add_eos=True).target_ids
                        for ex in examples]
            pe_gold, _ = response_stats(model, prompts, gold_ids, pad, options.generation_batch_size,
                                        options.passes, desc and f"{desc} (gold)", options.processes)
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    predictions = [task.prediction_for(ex, text) for ex, text in zip(examples, texts)]
    n_tokens = np.maximum([len(r) for r in responses], 1)
    confidence = np.exp(-pe.mean(axis=0) / n_tokens)  # geometric-mean token probability
    correct = np.array([task.is_correct_for(ex, p) for ex, p in zip(examples, predictions)], dtype=bool)
    return Scores([ex.id for ex in examples], predictions, golds, correct, confidence, me, pe, pe_gold,
                  responses=texts), hidden


def _label_scores(task, examples, label_logprobs, me, golds) -> Scores:
    """Pick the likeliest allowed label; PE is -log p of that label (label-free) or of the gold."""
    mean_logprobs = np.log(np.exp(label_logprobs).mean(axis=0))  # mean probability over passes
    choice = mean_logprobs.argmax(axis=1)
    shifted = mean_logprobs - mean_logprobs.max(axis=1, keepdims=True)
    confidence = 1.0 / np.exp(shifted).sum(axis=1)  # probability among the allowed labels
    predictions = [task.labels[c] for c in choice]
    gold_index = np.array([_label_index(task, g) for g in golds])
    rows = np.arange(len(examples))
    pe = -label_logprobs[:, rows, choice]
    pe_gold = -label_logprobs[:, rows, gold_index] if all(g is not None for g in golds) else None
    correct = (choice == gold_index) & (gold_index >= 0)
    label_probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    return Scores([ex.id for ex in examples], predictions, golds, correct, confidence, me, pe, pe_gold,
                  label_probs=label_probs)


def _label_index(task, gold: str | None) -> int:
    if gold is None:
        return -1
    lowered = [label.lower() for label in task.labels]
    return lowered.index(gold.lower()) if gold.lower() in lowered else -1


def _multi_token_label_scores(model, tokenizer, task, examples, prompts, continuations, options,
                              desc, mc, hidden=None) -> Scores:
    """Labels of several tokens: score every label sequence, ME over the chosen label's tokens.

    `hidden` (the prompt's last position, the same whatever follows) is filled by the first label's pass."""
    pad = tokenizer.pad_token_id
    n, n_labels = len(examples), len(continuations)
    label_logprobs = np.zeros((options.passes, n, n_labels))
    label_entropy = np.zeros((options.passes, n, n_labels))
    with mc:
        for j, text in enumerate(continuations):
            ids = [encode_pair(tokenizer, ex.prompt, text).target_ids for ex in examples]
            nll, entropy = response_stats(model, prompts, ids, pad, options.batch_size, options.passes,
                                          desc and f"{desc} ({task.labels[j]})", options.processes,
                                          hidden if j == 0 else None)
            label_logprobs[:, :, j], label_entropy[:, :, j] = -nll, entropy
    scores = _label_scores(task, examples, label_logprobs, np.zeros((options.passes, n)),
                           [ex.gold for ex in examples])
    choice = np.array([_label_index(task, p) for p in scores.predictions])
    scores.me = label_entropy[:, np.arange(n), choice]
    return scores


def _choice_scores(model, tokenizer, task, examples, prompts, options, desc, mc, hidden=None) -> Scores:
    """Choice tasks: every candidate of every example scored in one pass (`candidate_stats`), the pick
    and ME/PE over the candidates as engine/choices.py says. `hidden` gets the prompt's last position."""
    candidates = [[encode_pair(tokenizer, ex.prompt, task.target.format(gold=choice)).target_ids
                   for choice in ex.choices] for ex in examples]
    with mc:
        logliks = candidate_stats(model, prompts, candidates, tokenizer.pad_token_id, options.batch_size,
                                  options.passes, desc, options.processes, hidden)
    lengths = np.ones(logliks.shape[1:])
    for row, ex in enumerate(examples):
        lengths[row, :len(ex.choices)] = [len(choice) for choice in ex.choices]
    gold_index = np.array([ex.choices.index(ex.gold) if ex.gold in ex.choices else -1 for ex in examples])
    measured = candidate_measures(logliks, lengths, gold_index)
    counts = {len(ex.choices) for ex in examples}
    return Scores([ex.id for ex in examples], [ex.choices[c] for ex, c in zip(examples, measured.choice)],
                  [ex.gold for ex in examples], (measured.choice == gold_index) & (gold_index >= 0),
                  measured.confidence, measured.me, measured.pe, measured.pe_gold,
                  label_probs=measured.probs if len(counts) == 1 else None,
                  correct_norm=(measured.choice_norm == gold_index) & (gold_index >= 0),
                  candidate_logprobs=[measured.logprobs[row, :len(ex.choices)] for row, ex in enumerate(examples)])
