"""The bench runs end to end on a tiny model, and its fast path scores what the naive loop scores."""

import time
from dataclasses import replace

import pytest
import torch

from star_al import bench
from star_al.bench import (QUICK, BenchPlan, adapter_weight_count, forward_flops, model_shape, naive_scores,
                          run_bench)
from star_al.engine.scoring import ScoringOptions, score_examples
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples
from star_al.config import LoraSettings
from star_al.models.adapters import LORA

KEYS = ("peak_dtype", "bf16_fast", "scoring_fraction_of_peak", "scoring_speedup_vs_naive", "mc_cost_ratio",
        "training_speedup_vs_plain", "training_fraction_of_peak", "generation_tokens_per_s", "peak_memory_mb",
        "training_step_s_lora", "training_step_s_lora_peft", "training_step_s_dora", "training_step_s_ia3")


def test_naive_reference_matches_the_batched_path_with_dropout_off(tiny_backbone, data_root):
    """On BoolQ, the bench's pool (one-token answers, as the naive loop assumes)."""
    import torch

    task = load_task("boolq")
    examples = load_examples(task, "train", data_root=str(data_root))[:6]
    model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.3), seed=0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    model.eval()
    ours = score_examples(model, tiny_backbone.tokenizer, task, examples, ScoringOptions(batch_size=4))
    naive = naive_scores(model, tiny_backbone.tokenizer, task, examples)
    LORA.detach(model)
    assert naive.shape == (1, 6)
    assert abs(ours.me[0] - naive[0]).max() < 1e-4


def test_bench_reports_every_figure_the_goals_name(tiny_backbone, data_root):
    boolq, gsm8k = load_task("boolq"), load_task("gsm8k")
    examples = load_examples(boolq, "train", data_root=str(data_root))[:8]
    prompts = load_examples(gsm8k, "test", data_root=str(data_root))[:2]
    plan = BenchPlan(passes=2, train_steps=1, train_batch=4, naive_examples=4, max_new_tokens=4, peak_seconds=0.05)
    figures = run_bench(tiny_backbone, tiny_backbone, boolq, examples, gsm8k, prompts, plan, log=lambda _: None)
    for key in KEYS:
        assert key in figures, key
    assert figures["naive_max_abs_diff_fp32"] < 1e-4
    # An fp32 base: the fast path (fused LoRA forward) must match the naive loop as closely as
    # the plain path does; a naive model without the adapter's weights is 8e-6 off.
    assert figures["naive_max_abs_diff_fast"] <= 2 * figures["naive_max_abs_diff_fp32"] + 1e-6
    assert figures["peak_dtype"] in ("float32", "bfloat16")
    assert 0 < figures["scoring_fraction_of_peak_base_only"] < figures["scoring_fraction_of_peak"]
    assert 0 < figures["training_fraction_of_peak_base_only"] < figures["training_fraction_of_peak"]
    assert figures["mc_cost_ratio"] > 0


def test_flop_count_adds_attention_and_only_the_head_positions_used(tiny_backbone):
    shape = model_shape(tiny_backbone.model)
    one = forward_flops(shape, [10], 1)
    assert forward_flops(shape, [10], 10) - one == 2 * shape["head_params"] * 9
    assert forward_flops(shape, [10, 10], 2) == 2 * one


def test_flop_count_counts_a_shared_prefix_once(tiny_backbone):
    shape = model_shape(tiny_backbone.model)
    # Two sequences of 10 sharing 4 tokens: the prefix once, then 6 tokens each attending past it.
    shared = forward_flops(shape, [10, 10], 2, shared=4)
    prefix_once = 2 * forward_flops(shape, [10], 1) - forward_flops(shape, [4], 0)
    assert shared == pytest.approx(prefix_once)
    assert forward_flops(shape, [10, 10], 2, shared=0) - shared == pytest.approx(forward_flops(shape, [4], 0))


def test_lora_weights_count_rank_times_in_plus_out_for_every_projection(tiny_backbone):
    model = tiny_backbone.model
    projections = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and name != "lm_head"]
    assert len(projections) == 2 * 7  # q, k, v, o, gate, up, down in each of 2 layers
    expected = sum(4 * (m.in_features + m.out_features) for m in projections)
    peft_model = LORA.attach(model, LoraSettings(rank=4), seed=0)
    assert adapter_weight_count(peft_model) == expected
    LORA.detach(peft_model)


def test_where_bf16_is_slow_the_bench_runs_no_large_bf16_matmul_and_prints_as_it_goes(
        tiny_backbone, data_root, monkeypatch):
    """The forced slow-bf16 branch (an AVX2-only CPU emulates bf16 at about 1 GFLOP/s: one
    2048 matmul takes about 17 s): only small bf16 matmuls, every stage's line printed with
    its time as it is measured, and the quick plan leaves the naive and adapter stages out."""
    matmuls = []
    real_matmul_gflops = bench.matmul_gflops

    def recording(dtype, size=2048, *args, **kwargs):
        matmuls.append((dtype, size))
        return real_matmul_gflops(dtype, size if dtype == torch.float32 else min(size, 64), *args, **kwargs)

    monkeypatch.setattr(bench, "matmul_gflops", recording)
    monkeypatch.setattr(bench, "cpu_bf16_is_fast", lambda: False)
    boolq, gsm8k = load_task("boolq"), load_task("gsm8k")
    examples = load_examples(boolq, "train", data_root=str(data_root))[:8]
    prompts = load_examples(gsm8k, "test", data_root=str(data_root))[:2]
    lines = []
    plan = replace(QUICK, examples=8, train_batch=4, max_new_tokens=4, peak_seconds=0.05)
    figures = run_bench(tiny_backbone, tiny_backbone, boolq, examples, gsm8k, prompts, plan, log=lines.append)
    bf16_sizes = [size for dtype, size in matmuls if dtype == torch.bfloat16]
    assert bf16_sizes and max(bf16_sizes) <= bench.SMALL_MATMUL
    assert figures["peak_dtype"] == "float32" and figures["bf16_fast"] is False
    stages = [line.split("] ", 1)[1].split(":", 1)[0] for line in lines]
    assert stages[0] == "matmul peak" and "bf16 is slow here" in lines[0]
    assert {"scoring", "training", "generation"} <= set(stages)
    assert not {"naive reference", "adapter methods"} & set(stages)
    times = [float(line[1:].split(" s]", 1)[0]) for line in lines]
    assert times == sorted(times) and figures["bench_seconds"] >= times[-1] - 0.05
    assert "naive_examples_per_s" not in figures and "training_step_s_dora" not in figures


def test_a_stage_starts_no_new_turn_once_its_time_is_spent():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.02)

    bench._taking_turns([slow], rounds=50, warmup=False, seconds=0.05)
    assert 2 <= len(calls) <= 5
    calls.clear()
    bench._taking_turns([slow], rounds=3, warmup=False, seconds=0.0)
    assert len(calls) == 1  # one turn always runs


def test_bench_plan_takes_quick_and_the_counts_given():
    from argparse import Namespace

    assert bench.bench_plan(Namespace(quick=True)) == QUICK
    plan = bench.bench_plan(Namespace(quick=True, examples=10, naive_examples=4))
    assert plan.examples == 10 and plan.naive and plan.naive_examples == 4 and not plan.adapters
    with pytest.raises(bench.StarError, match="--train-steps must be at least 1"):
        bench.bench_plan(Namespace(quick=False, train_steps=0))
