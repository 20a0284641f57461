"""Batching, scoring and LoRA training on a tiny real Llama: fast paths equal the plain ones."""

import numpy as np
import pytest
import torch

from star_al.data.batching import encode_pair, encode_prompt, left_pad, length_buckets
from star_al.engine.scoring import (ScoringOptions, mc_dropout_active, next_token_stats, response_stats,
                             score_examples)
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples
from star_al.config import LoraSettings, TrainSettings
from star_al.engine.training import answer_loss, answer_only_batch, optimizer_groups, train_adapter, training_attention
from star_al.models.adapters import LORA
from star_al.engine.uncertainty import token_entropy, token_nll


def _train_slice(name, count, data_root):
    task = load_task(name)
    return task, load_examples(task, "train", data_root=str(data_root))[:count]


@pytest.fixture
def sst2(data_root):
    return _train_slice("sst2", 24, data_root)


def test_left_padded_batch_gives_the_logits_of_each_row_alone(tiny_backbone, sst2):
    task, examples = sst2
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    prompts = [encode_prompt(tok, ex.prompt) for ex in examples[:6]]
    assert len({len(p) for p in prompts}) > 1, "need rows of different lengths"
    ids, mask, pos = (t.to(model.device) for t in left_pad(prompts, tok.pad_token_id))
    with torch.inference_mode():
        batched = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -1]
        for row, prompt in enumerate(prompts):
            alone = model(input_ids=torch.tensor([prompt], device=model.device)).logits[0, -1]
            torch.testing.assert_close(batched[row], alone, atol=1e-4, rtol=1e-4)


def test_length_buckets_cover_every_index_once_sorted_by_length():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = length_buckets(lengths, 3)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)


def test_last_position_label_scores_match_full_vocabulary_softmax_one_at_a_time(tiny_backbone, sst2):
    task, examples = sst2
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    prompts = [encode_prompt(tok, ex.prompt) for ex in examples[:8]]
    labels = [encode_pair(tok, examples[0].prompt, task.label_target(l)).target_ids[0] for l in task.labels]
    label_logprobs, entropy = next_token_stats(model, prompts, labels, tok.pad_token_id, batch_size=3)
    with torch.inference_mode():
        for row, prompt in enumerate(prompts):
            logits = model(input_ids=torch.tensor([prompt], device=model.device)).logits[0, -1].double()
            probs = torch.softmax(logits, -1)
            np.testing.assert_allclose(label_logprobs[0, row], torch.log(probs[labels]).cpu().numpy(), atol=1e-4)
            assert entropy[0, row] == pytest.approx(float(-(probs * probs.log()).sum()), abs=1e-4)


def test_response_stats_equal_a_python_loop_over_positions(tiny_backbone, sst2):
    task, examples = sst2
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    pairs = [encode_pair(tok, ex.prompt, " a longer made up answer" * (i % 3 + 1)) for i, ex in enumerate(examples[:5])]
    nll, entropy = response_stats(model, [p.prompt_ids for p in pairs], [p.target_ids for p in pairs],
                                  tok.pad_token_id, batch_size=2)
    with torch.inference_mode():
        for row, pair in enumerate(pairs):
            seq = pair.prompt_ids + pair.target_ids
            logits = model(input_ids=torch.tensor([seq], device=model.device)).logits[0]
            expected_nll = expected_entropy = 0.0
            for offset, token in enumerate(pair.target_ids):
                position = len(pair.prompt_ids) + offset - 1
                logprobs = torch.log_softmax(logits[position].double(), -1)
                expected_nll -= float(logprobs[token])
                expected_entropy -= float((logprobs.exp() * logprobs).sum())
            assert nll[0, row] == pytest.approx(expected_nll, rel=1e-4)
            assert entropy[0, row] == pytest.approx(expected_entropy, rel=1e-4)


def test_uncertainty_measures_on_a_known_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert float(token_entropy(logits)) == pytest.approx(1.5 * np.log(2))
    assert float(token_nll(logits, torch.tensor([1]))) == pytest.approx(np.log(4))


def test_loss_is_computed_on_answer_tokens_only(tiny_backbone, sst2):
    task, examples = sst2
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    encoded = [encode_pair(tok, ex.prompt, ex.target + " extra words", add_eos=True) for ex in examples[:4]]
    *inputs, targets = answer_only_batch(encoded, tok.pad_token_id, model.device)
    assert int((targets != -100).sum()) == sum(len(e.target_ids) for e in encoded)
    fast = answer_loss(model, *inputs, targets)
    total, count = 0.0, 0
    for e in encoded:  # plain: full logits of the row alone, loss at the answer positions
        seq = e.prompt_ids + e.target_ids
        logits = model(input_ids=torch.tensor([seq], device=model.device)).logits[0]
        for offset, token in enumerate(e.target_ids):
            total -= float(torch.log_softmax(logits[len(e.prompt_ids) + offset - 1], -1)[token])
            count += 1
    assert float(fast) == pytest.approx(total / count, rel=1e-4)


def test_weight_decay_applies_to_lora_b_only(tiny_backbone):
    peft_model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8), seed=0)
    decayed, plain = optimizer_groups(peft_model, 0.5)
    assert decayed["weight_decay"] == 0.5 and plain["weight_decay"] == 0.0
    names = {id(p): n for n, p in peft_model.named_parameters()}
    assert decayed["params"] and all("lora_B" in names[id(p)] for p in decayed["params"])
    assert plain["params"] and all("lora_A" in names[id(p)] for p in plain["params"])


def test_b_decay_shrinks_b_and_leaves_a_as_without_decay(tiny_backbone_factory, sst2):
    """Decoupled decay pulls the (zero-initialised, then trained) B matrices toward zero."""
    task, examples = sst2
    results = {}
    for decay in (0.0, 0.9):
        backbone = tiny_backbone_factory(0)
        peft_model = LORA.attach(backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.0), 0)
        train_adapter(peft_model, backbone.tokenizer, task, examples[:8],
                      TrainSettings(epochs=4, batch_size=8, learning_rate=1e-2, b_decay=decay), 0, desc=None)
        results[decay] = {n: p.detach().clone() for n, p in peft_model.named_parameters() if "lora_" in n}
    b_names = [n for n in results[0.0] if "lora_B" in n]
    b_norm = {d: sum(float(results[d][n].norm()) for n in b_names) for d in results}
    assert b_norm[0.9] < b_norm[0.0]


def test_fresh_adapter_starts_from_the_untouched_base(tiny_backbone, sst2):
    task, examples = sst2
    before = {n: p.clone() for n, p in tiny_backbone.model.named_parameters()}
    peft_model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8), 0)
    train_adapter(peft_model, tiny_backbone.tokenizer, task, examples[:8],
                  TrainSettings(epochs=1, batch_size=4, learning_rate=1e-2), 0, desc=None)
    base = LORA.detach(peft_model)
    for name, param in base.named_parameters():
        torch.testing.assert_close(param, before[name])


def nonzero_b(peft_model):
    """B starts at zero, so dropout on the LoRA branch would change nothing: give B weights, go to eval."""
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    peft_model.eval()


def test_mc_passes_differ_only_with_lora_dropout_switched_on(tiny_backbone, sst2):
    task, examples = sst2
    peft_model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.5), 0)
    nonzero_b(peft_model)
    tok = tiny_backbone.tokenizer
    torch.manual_seed(0)
    mc = score_examples(peft_model, tok, task, examples[:6], ScoringOptions(passes=3, batch_size=4))
    assert mc.me.shape == (3, 6)
    assert not np.allclose(mc.me[0], mc.me[1])
    torch.manual_seed(0)
    again = score_examples(peft_model, tok, task, examples[:6], ScoringOptions(passes=3, batch_size=4))
    np.testing.assert_array_equal(mc.me, again.me)
    assert not any(m.training for n, m in peft_model.named_modules() if "lora_dropout" in n)
    plain = score_examples(peft_model, tok, task, examples[:6], ScoringOptions(passes=1))
    plain_again = score_examples(peft_model, tok, task, examples[:6], ScoringOptions(passes=1))
    np.testing.assert_array_equal(plain.me, plain_again.me)


def test_mc_dropout_without_lora_dropout_is_refused(tiny_backbone):
    from star_al.errors import StarError

    peft_model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.0), 0)
    with pytest.raises(StarError, match="dropout"):
        with mc_dropout_active(peft_model):
            pass


def test_generation_task_scores_a_greedy_response(tiny_backbone, data_root):
    task = load_task("gsm8k")
    examples = load_examples(task, "test", data_root=str(data_root))[:3]
    object.__setattr__(task, "max_new_tokens", 6)
    scores = score_examples(tiny_backbone.model, tiny_backbone.tokenizer, task, examples,
                            ScoringOptions(gold_pe=True, generation_batch_size=2))
    assert scores.me.shape == scores.pe.shape == scores.pe_gold.shape == (1, 3)
    assert np.all(scores.pe_gold > 0) and np.all((scores.confidence > 0) & (scores.confidence <= 1))


def test_merged_deterministic_pass_equals_unmerged_and_restores_base_weights_exactly(tiny_backbone, sst2):
    from star_al.engine.scoring import merged_adapter

    task, examples = sst2
    peft_model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8), 0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)
    peft_model.eval()
    tok = tiny_backbone.tokenizer
    prompts = [encode_prompt(tok, ex.prompt) for ex in examples[:8]]
    labels = [5, 7]
    unmerged = next_token_stats(peft_model, prompts, labels, tok.pad_token_id, batch_size=4)
    before = {n: p.clone() for n, p in peft_model.named_parameters() if "base_layer" in n}
    with merged_adapter(peft_model):
        merged = next_token_stats(peft_model, prompts, labels, tok.pad_token_id, batch_size=4)
    np.testing.assert_allclose(merged[0], unmerged[0], atol=1e-4)
    np.testing.assert_allclose(merged[1], unmerged[1], atol=1e-4)
    for name, param in peft_model.named_parameters():
        if "base_layer" in name:
            assert torch.equal(param, before[name]), name
    again = next_token_stats(peft_model, prompts, labels, tok.pad_token_id, batch_size=4)
    np.testing.assert_array_equal(again[0], unmerged[0])


def test_fresh_adapters_use_bit_dropout_and_mc_passes_switch_it_on(tiny_backbone):
    from star_al.engine.scoring import mc_dropout_active
    from star_al.models.fast_lora import BitDropout

    model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.2), seed=0)
    dropouts = [m for n, m in model.named_modules() if "lora_dropout" in n and isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(type(m) is BitDropout and m.p == 0.2 for m in dropouts)
    model.eval()
    with mc_dropout_active(model):
        assert all(m.training for m in dropouts)
    assert not any(m.training for m in dropouts)
    LORA.detach(model)


@pytest.fixture
def boolq(data_root):
    return _train_slice("boolq", 10, data_root)


def test_shared_instruction_prefix_is_cached_once_and_gives_the_same_scores(tiny_backbone, boolq):
    from star_al.engine.scoring import shared_prefix

    task, examples = boolq
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    prompts = [encode_prompt(tok, ex.prompt) for ex in examples]
    prefix = shared_prefix(model, prompts, 1, length_buckets([len(p) for p in prompts], 3))
    assert prefix is not None and prefix.length >= 8, "BoolQ prompts share their instruction"
    assert all(p[:prefix.length] == prompts[0][:prefix.length] for p in prompts)
    labels = [encode_pair(tok, examples[0].prompt, task.label_target(l)).target_ids[0] for l in task.labels]
    label_logprobs, entropy = next_token_stats(model, prompts, labels, tok.pad_token_id, batch_size=3)
    responses = [encode_pair(tok, ex.prompt, " an answer" * (i % 3 + 1)).target_ids for i, ex in enumerate(examples)]
    nll, response_entropy = response_stats(model, prompts, responses, tok.pad_token_id, batch_size=3)
    with torch.inference_mode():
        for row, prompt in enumerate(prompts):
            logits = model(input_ids=torch.tensor([prompt + responses[row]], device=model.device)).logits[0].double()
            logprobs = torch.log_softmax(logits, -1)
            at_answer = logprobs[len(prompt) - 1]
            np.testing.assert_allclose(label_logprobs[0, row], at_answer[labels].cpu().numpy(), atol=1e-4)
            assert entropy[0, row] == pytest.approx(float(-(at_answer.exp() * at_answer).sum()), abs=1e-4)
            positions = range(len(prompt) - 1, len(prompt) - 1 + len(responses[row]))
            expected = -sum(float(logprobs[pos, token]) for pos, token in zip(positions, responses[row]))
            assert nll[0, row] == pytest.approx(expected, rel=1e-4)


def test_prompts_without_a_long_common_start_share_nothing(tiny_backbone, sst2):
    from star_al.engine.scoring import shared_prefix

    _, examples = sst2
    prompts = [encode_prompt(tiny_backbone.tokenizer, ex.prompt) for ex in examples[:6]]
    assert shared_prefix(tiny_backbone.model, prompts, 1, length_buckets([len(p) for p in prompts], 3)) is None
    assert shared_prefix(tiny_backbone.model, prompts[:1], 1, [[0]]) is None


def test_mc_passes_over_a_shared_prefix_draw_their_own_noise(tiny_backbone, boolq):
    task, examples = boolq
    model = LORA.attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.3), seed=0)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    model.eval()
    options = ScoringOptions(batch_size=3, passes=3)
    torch.manual_seed(1)
    first = score_examples(model, tiny_backbone.tokenizer, task, examples, options)
    torch.manual_seed(1)
    again = score_examples(model, tiny_backbone.tokenizer, task, examples, options)
    LORA.detach(model)
    np.testing.assert_array_equal(first.me, again.me)
    assert first.me.shape == (3, len(examples))
    assert np.abs(first.me[0] - first.me[1]).min() > 0 and np.abs(first.me[1] - first.me[2]).min() > 0


def test_shared_prefix_length_stops_short_of_the_shortest_prompt_and_ignores_short_overlaps_and_single_batches():
    from star_al.engine.scoring import MIN_SHARED_PREFIX, shared_prefix_length

    head = list(range(100, 100 + MIN_SHARED_PREFIX + 2))
    two_batches = [[0], [1]]
    assert shared_prefix_length([head + [1, 2], head + [3]], two_batches) == len(head)
    assert shared_prefix_length([head, head + [3]], two_batches) == len(head) - 1
    short = head[:MIN_SHARED_PREFIX - 1]
    assert shared_prefix_length([short + [1], short + [2]], two_batches) == 0
    assert shared_prefix_length([head + [1]], [[0]]) == 0
    assert shared_prefix_length([head + [1, 2], head + [3]], [[0, 1]]) == 0, "one batch: the cache would serve once"


def test_training_attention_gives_the_same_loss_and_gradients_and_restores_the_kernel(tiny_backbone, sst2):
    task, examples = sst2
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    model.set_attn_implementation("sdpa")
    peft_model = LORA.attach(model, LoraSettings(rank=4, alpha=8, dropout=0.0), seed=0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    encoded = [encode_pair(tok, ex.prompt, ex.target) for ex in examples[:6]]
    *inputs, targets = answer_only_batch(encoded, tok.pad_token_id, model.device)

    def loss_and_grads():
        peft_model.zero_grad()
        loss = answer_loss(peft_model, *inputs, targets)
        loss.backward()
        return float(loss), [p.grad.clone() for p in peft_model.parameters() if p.requires_grad]

    plain_loss, plain_grads = loss_and_grads()
    with training_attention(peft_model):
        expected = "eager" if model.device.type == "cpu" else "sdpa"
        assert model.config._attn_implementation == expected
        loss, grads = loss_and_grads()
    assert model.config._attn_implementation == "sdpa"
    assert loss == pytest.approx(plain_loss, rel=1e-5)
    for grad, plain in zip(grads, plain_grads):
        torch.testing.assert_close(grad, plain, rtol=1e-4, atol=1e-6)
    LORA.detach(peft_model)


def test_adamw_is_fused_on_cpu_and_makes_the_plain_adamw_update():
    from star_al.engine.training import adamw

    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(4, 6)), torch.nn.Parameter(torch.randn(6, 4))]
    twins = [torch.nn.Parameter(w.detach().clone()) for w in weights]
    starts = [w.detach().clone() for w in weights]
    groups = lambda ws: [{"params": ws[:1], "weight_decay": 0.5}, {"params": ws[1:], "weight_decay": 0.0}]  # noqa: E731
    fused, plain = adamw(groups(weights), lr=1e-2), torch.optim.AdamW(groups(twins), lr=1e-2)
    assert fused.defaults["fused"] is True
    for _ in range(3):
        grads = [torch.randn_like(w) for w in weights]
        for params, optimizer in ((weights, fused), (twins, plain)):
            for param, grad in zip(params, grads):
                param.grad = grad.clone()
            optimizer.step()
    for weight, twin, start in zip(weights, twins, starts):
        assert not torch.equal(weight, start)
        torch.testing.assert_close(weight, twin, rtol=1e-6, atol=1e-7)


def test_gradient_checkpointing_gives_the_same_losses_and_adapter(tiny_backbone_factory, sst2):
    """Recomputed activations draw the same dropout masks (the generator state is restored)."""
    from star_al.engine.distributed import Execution

    task, examples = sst2
    results = {}
    for checkpointing in (False, True):
        backbone = tiny_backbone_factory(0)
        peft_model = LORA.attach(backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.1), 0)
        trained = train_adapter(peft_model, backbone.tokenizer, task, examples[:12],
                                TrainSettings(epochs=2, batch_size=4, learning_rate=1e-2), 0, desc=None,
                                execution=Execution(gradient_checkpointing=checkpointing))
        results[checkpointing] = trained.losses, {n: p.detach().clone() for n, p in peft_model.named_parameters()
                                                  if "lora_" in n}
        assert not any(getattr(m, "gradient_checkpointing", False) for m in backbone.model.modules())  # off again
    from star_al.engine.training import gradient_checkpointing

    peft_model = LORA.attach(tiny_backbone_factory(0).model, LoraSettings(rank=4, alpha=8), 0)
    with gradient_checkpointing(peft_model, True):  # it does switch the layers to recomputing
        assert any(getattr(m, "gradient_checkpointing", False) for m in peft_model.modules())
    (plain_losses, plain), (checkpointed_losses, checkpointed) = results[False], results[True]
    assert len(plain_losses) == 6
    np.testing.assert_allclose(checkpointed_losses, plain_losses, rtol=1e-5)
    for name, weight in plain.items():
        torch.testing.assert_close(checkpointed[name], weight, rtol=1e-4, atol=1e-6)
