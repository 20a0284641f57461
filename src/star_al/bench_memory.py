"""`star bench --pool-memory`: how a pool's size moves the memory of a scoring pass.

Each measurement runs in a fresh process (allocator state is per process): a tiny
2-layer Llama built here with SmolLM2's vocabulary size (so each scored row of logits
is SmolLM2's), a pool of N sst2 sentences (taken in turn from its train file), one
base-model scoring pass. It prints the process's resident memory before the pass, its peak and
what is left after, with the heap released after each batch (engine/heap.py) and
without, side by side.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

from star_al.engine.heap import resident_mb

VOCAB = 49152  # SmolLM2's: one fp32 row of logits is 192 KB


def sentences(data_root: str) -> list[str]:
    """sst2's train sentences: real text, real spread of lengths."""
    from star_al.data.catalog import load_task
    from star_al.data.tasks import load_examples

    return [ex.record["sentence"] for ex in load_examples(load_task("sst2"), "train", data_root=data_root)]


def pool_of(task, texts: list[str], n: int):
    """N unlabeled examples, the sentences taken in turn (a pool larger than the file repeats them)."""
    return task.build_examples(((f"pool:{i + 1}", {"sentence": texts[i % len(texts)]}) for i in range(n)),
                               require_answer=False)


def tiny_model(texts: list[str], vocab: int = VOCAB):
    """A seeded random 2-layer Llama and a byte-level BPE tokenizer of 1,000 tokens trained here on the texts."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts[:2000], trainers.BpeTrainer(
        vocab_size=1000, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(config).eval(), tokenizer


class _KeepHeap:
    """The plain way: what every batch freed stays with the allocator."""

    def after_batch(self) -> None:
        return None


def measure_pass(n: int, data_root: str, release: bool = True, vocab: int = VOCAB) -> dict:
    """One base-model scoring pass over a pool of n, in this process: memory and time."""
    import star_al.engine.scoring as scoring
    from star_al.data.catalog import load_task

    if not release:
        scoring.HeapGuard = _KeepHeap
    task = load_task("sst2")
    texts = sentences(data_root)
    model, tokenizer = tiny_model(texts, vocab)
    pool = pool_of(task, texts, n)
    before = resident_mb()
    started = time.perf_counter()
    scoring.score_examples(model, tokenizer, task, pool, scoring.ScoringOptions(batch_size=32))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"examples": n, "release": release, "rss_before_mb": before, "rss_peak_mb": peak,
            "rss_after_mb": resident_mb(), "growth_kb_per_example": 1024 * (peak - before) / n, "seconds": seconds}


def measure_in_child(n: int, data_root: str, release: bool, vocab: int = VOCAB) -> dict:
    """measure_pass in a fresh Python process, so no earlier pass shapes the allocator's state."""
    code = ("import json, sys; from star_al.bench_memory import measure_pass; "
            f"print(json.dumps(measure_pass({n}, {str(data_root)!r}, {release}, {vocab})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the pool-memory pass failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_pool_memory_bench(sizes: list[int], data_root: str, log=print) -> list[dict]:
    """Each size with and without the release, in fresh processes; one line per pass as it ends."""
    rows = []
    for n in sizes:
        for release in (True, False):
            row = measure_in_child(n, data_root, release)
            rows.append(row)
            log(f"pool {n:>7} examples, heap {'released after each batch' if release else 'kept (plain)':<26}: "
                f"RSS {row['rss_before_mb']:.0f} MB before, peak {row['rss_peak_mb']:.0f} MB, "
                f"{row['rss_after_mb']:.0f} MB after; {row['growth_kb_per_example']:.0f} KB per example; "
                f"{row['seconds']:.1f} s")
        ours, plain = rows[-2], rows[-1]
        log(f"pool {n:>7} examples: plain/released peak growth "
            f"{(plain['rss_peak_mb'] - plain['rss_before_mb']) / max(ours['rss_peak_mb'] - ours['rss_before_mb'], 1):.1f}x, "
            f"time {plain['seconds'] / ours['seconds']:.2f}x")
    return rows
