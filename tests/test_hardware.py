"""The bf16 decision follows the hardware: both branches."""

import torch

from star_al.models.hardware import bf16_is_fast, choose_placement


def test_bf16_is_chosen_where_the_cpu_runs_it_fast():
    assert bf16_is_fast("AVX512", fp32_seconds=0.010, bf16_seconds=0.003)


def test_bf16_is_refused_on_an_avx2_cpu_whatever_the_timing():
    assert not bf16_is_fast("AVX2", fp32_seconds=0.010, bf16_seconds=0.003)
    assert not bf16_is_fast("DEFAULT", fp32_seconds=0.010, bf16_seconds=0.003)


def test_bf16_is_refused_where_it_timed_slower():
    assert not bf16_is_fast("AVX512", fp32_seconds=0.003, bf16_seconds=1.2)


def test_explicit_dtype_overrides_the_measurement():
    assert choose_placement("cpu", "float32").dtype == torch.float32
    assert choose_placement("cpu", "bf16").dtype == torch.bfloat16
