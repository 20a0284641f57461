"""The fused LoRA forward and bit dropout: PEFT's distribution and math, fewer passes."""

import pytest
import torch

from star_al.data.batching import encode_pair, left_pad
from star_al.models.fast_lora import BitDropout, drop_inputs, keep_bits, replace_lora_dropout
from star_al.engine.scoring import mc_dropout_active, merged_adapter
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples
from star_al.config import LoraSettings
from star_al.engine.training import answer_loss, answer_only_batch, autocast_context
from star_al.models.adapters import LORA


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_keep_bits_drop_a_p_fraction_and_leave_kept_values_bit_exact(dtype):
    torch.manual_seed(0)
    x = torch.randn(500, 1000).to(dtype)
    torch.manual_seed(5)
    kept, kept_fraction = drop_inputs(x, 0.1)
    assert kept_fraction == pytest.approx(0.9, abs=1e-4)
    dropped = kept == 0
    assert abs(float(dropped.float().mean()) - 0.1) < 0.003
    assert torch.equal(kept[~dropped], x[~dropped])
    bits, _ = keep_bits(x, 0.1)
    assert set(bits.unique().tolist()) == {0, -1}, "all ones or all zeros per value"
    torch.manual_seed(5)
    assert torch.equal(drop_inputs(x, 0.1)[0], kept), "torch.manual_seed fixes the masks"
    assert not torch.equal(drop_inputs(x, 0.1)[0], kept)
    rows, cols = dropped.float().mean(1), dropped.float().mean(0)
    assert rows.std() < 0.02 and cols.std() < 0.03, "no stripes: every slice of every word is used"


def test_keep_bits_follow_p_across_its_range():
    torch.manual_seed(1)
    x = torch.ones(1000, 1000, dtype=torch.bfloat16)
    for p in (0.01, 0.05, 0.3, 0.5, 0.9):
        kept, kept_fraction = drop_inputs(x, p)
        assert kept_fraction == pytest.approx(1 - p, abs=1e-4)
        assert float((kept != 0).float().mean()) == pytest.approx(1 - p, abs=0.003)


def test_bit_dropout_keeps_the_dropout_distribution_and_is_identity_in_eval():
    torch.manual_seed(0)
    x = torch.ones(400, 1000)
    layer = BitDropout(0.1).train()
    out = layer(x)
    kept = out != 0
    assert abs(float(kept.float().mean()) - 0.9) < 0.003
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.9), rtol=1e-4)
    assert abs(float(out.mean()) - 1.0) < 0.005  # unbiased, as nn.Dropout
    assert not torch.equal(layer(x), out)
    torch.manual_seed(0)
    assert torch.equal(layer(x), out)  # seeded
    x.requires_grad_(True)
    out = layer(x)
    out.sum().backward()
    assert torch.equal(x.grad != 0, out != 0)  # gradients flow through the kept values only
    assert torch.equal(layer.eval()(x), x)


def _twin_adapters(tiny_backbone_factory, dropout: float, base_dtype=torch.float32):
    """The same tiny model and adapter twice: PEFT's forward with BitDropout, and ours."""
    models = []
    for fast in (False, True):
        backbone = tiny_backbone_factory(0)
        model = LORA.attach(backbone.model.to(base_dtype), LoraSettings(rank=4, alpha=8, dropout=dropout),
                                     seed=0, fast=fast)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.manual_seed(len(name))
                torch.nn.init.normal_(param, std=0.1)
        if not fast:
            replace_lora_dropout(model, BitDropout)
        models.append(model)
    assert type(next(m for n, m in models[1].named_modules() if n.endswith("q_proj"))).__name__ == "FastLoraLinear"
    return backbone.tokenizer, models


def _batch(tok, data_root, n=6):
    task = load_task("sst2")
    examples = load_examples(task, "train", data_root=str(data_root))[:n]
    return [encode_pair(tok, ex.prompt, ex.target) for ex in examples]


def test_fast_forward_gives_pefts_logits_with_and_without_dropout(tiny_backbone_factory, data_root):
    tok, (plain, fast) = _twin_adapters(tiny_backbone_factory, dropout=0.2)
    ids, mask, positions = left_pad([e.prompt_ids for e in _batch(tok, data_root)], tok.pad_token_id, "cpu")
    logits = lambda model: model(input_ids=ids, attention_mask=mask, position_ids=positions).logits  # noqa: E731
    for model in (plain, fast):
        model.eval()
    torch.testing.assert_close(logits(fast), logits(plain), rtol=1e-5, atol=1e-5)
    draws = []
    for model in (plain, fast):
        with mc_dropout_active(model):
            torch.manual_seed(7)
            draws.append(logits(model))
    torch.testing.assert_close(draws[1], draws[0], rtol=1e-5, atol=1e-5)
    with mc_dropout_active(fast):
        assert not torch.allclose(logits(fast), draws[1]), "dropout is on"
    with merged_adapter(fast), merged_adapter(plain):
        torch.testing.assert_close(logits(fast), logits(plain), rtol=1e-5, atol=1e-5)
    with fast.disable_adapter(), plain.disable_adapter():
        torch.testing.assert_close(logits(fast), logits(plain), rtol=0, atol=0)


@pytest.mark.parametrize("base_dtype", [torch.float32, torch.bfloat16])
def test_fast_forward_gives_pefts_loss_and_gradients_under_dropout(tiny_backbone_factory, data_root, base_dtype):
    """As training runs them: a bf16 base trains under autocast with fp32 LoRA weights."""
    tok, models = _twin_adapters(tiny_backbone_factory, dropout=0.2, base_dtype=base_dtype)
    *inputs, targets = answer_only_batch(_batch(tok, data_root), tok.pad_token_id, "cpu")
    results = []
    for model in models:
        model.train()
        torch.manual_seed(3)
        with autocast_context(model):
            loss = answer_loss(model, *inputs, targets)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g.dtype == torch.float32 for g in grads)
        results.append((loss.detach(), grads))
    (plain_loss, plain_grads), (fast_loss, fast_grads) = results
    # bf16 rounds the two summation orders differently: compare each gradient as a whole there.
    tolerance = 3e-2 if base_dtype == torch.bfloat16 else 1e-5  # other masks: ~100%
    assert abs(float(fast_loss - plain_loss)) <= tolerance * abs(float(plain_loss))
    assert len(fast_grads) == len(plain_grads)
    for fast_grad, plain_grad in zip(fast_grads, plain_grads):
        assert plain_grad.norm() > 0
        assert (fast_grad - plain_grad).norm() <= tolerance * plain_grad.norm()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_process_holding_some_rows_of_a_batch_gets_those_rows_of_the_whole_batchs_mask(dtype):
    """Data-parallel training: rows start.. of the mask drawn for the whole batch, as one process draws it."""
    whole = torch.randn(5, 3, 7).to(dtype)
    torch.manual_seed(11)
    full, kept = keep_bits(whole, 0.3)
    for start, stop in ((0, 3), (3, 5), (4, 5)):
        torch.manual_seed(11)
        part, part_kept = keep_bits(whole[start:stop], 0.3, rows=(start, 5))
        assert part_kept == kept
        assert torch.equal(part, full[start:stop])


def test_skipping_a_forwards_mask_draws_leaves_the_generator_where_the_forward_would(tiny_backbone):
    """A process that leaves a batch to another steps past exactly the seeds that batch's forward takes."""
    from star_al.models.fast_lora import mask_draws_per_forward, skip_mask_draws

    peft_model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.1), 0)
    ids = torch.tensor([[5, 6, 7, 8]])
    with mc_dropout_active(peft_model), torch.no_grad():
        assert mask_draws_per_forward(peft_model) == 14  # 2 layers x 7 projections
        torch.manual_seed(3)
        peft_model(input_ids=ids)
        after_forward = torch.get_rng_state()
        torch.manual_seed(3)
        skip_mask_draws(mask_draws_per_forward(peft_model))
        assert torch.equal(torch.get_rng_state(), after_forward)
    assert mask_draws_per_forward(peft_model) == 0  # dropout off: no draws
