"""BADGE's gradient embedding from the scoring pass equals the gradient a backward pass gives."""

import numpy as np
import pytest
import torch

from star_al.al.loop import ActiveLearningRun
from star_al.al.run_dir import RunDir
from star_al.data.batching import encode_pair, encode_prompt
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples
from star_al.engine.scoring import ScoringOptions, score_examples
from star_al.config import LoraSettings
from star_al.errors import StarError
from star_al.models.adapters import adapter_method
from test_loop import smoke_config


def label_ids(tokenizer, task, prompt):
    return [encode_pair(tokenizer, prompt, task.label_target(label)).target_ids[0] for label in task.labels]


def backward_gradient(model, prompt_ids, labels, weight):
    """d CE(own answer among the labels) / d weight, by a backward pass over the whole model."""
    with torch.enable_grad():
        logits = model(input_ids=torch.tensor([prompt_ids], device=model.device)).logits[0, -1, labels].float()
        loss = torch.nn.functional.cross_entropy(logits[None], logits.argmax()[None])
        (gradient,) = torch.autograd.grad(loss, weight)
    return gradient.float().cpu().numpy()


def adapted(model, method="lora", targets=("all-linear",)):
    peft_model = adapter_method(method).attach(model, LoraSettings(rank=4, alpha=8, dropout=0.2,
                                                                    target_modules=targets), 0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.3)
    return peft_model.eval()  # as the loop scores: no dropout outside MC passes


@pytest.mark.parametrize("passes", [1, 2])  # 1: the adapter merged into the weights; 2: MC dropout
def test_lora_b_gradient_factors_equal_the_backward_pass(tiny_backbone, data_root, passes):
    task = load_task("boolq")  # one-token answers under the test tokenizer; through the shared-prefix cache
    examples = load_examples(task, "train", data_root=str(data_root))[:5]
    tok = tiny_backbone.tokenizer
    model = adapted(tiny_backbone.model)
    scores = score_examples(model, tok, task, examples, ScoringOptions(batch_size=2, gradients=True))
    g, a = scores.gradients
    if passes == 2:  # dropout on: the passes' factors differ from the deterministic ones, and average
        torch.manual_seed(0)
        g2, a2 = score_examples(model, tok, task, examples, ScoringOptions(batch_size=2, passes=2,
                                                                           gradients=True)).gradients
        assert np.isfinite(g2).all() and not np.allclose(a2, a)
        return
    assert g.shape == (5, 32) and a.shape == (5, 4)
    down = model.get_decoder().layers[-1].mlp.down_proj
    b_weight = down.lora_B[down.active_adapters[0]].weight
    for row, ex in enumerate(examples):
        expected = backward_gradient(model, encode_prompt(tok, ex.prompt), label_ids(tok, task, ex.prompt), b_weight)
        np.testing.assert_allclose(np.outer(g[row], a[row]), expected, atol=1e-5, rtol=1e-3)
    plain = score_examples(model, tok, task, examples, ScoringOptions(batch_size=2))
    np.testing.assert_array_equal(plain.me, scores.me)  # the hooks change nothing else


def test_full_fine_tuning_takes_the_gradient_on_the_whole_weight(tiny_backbone, data_root):
    task = load_task("boolq")
    examples = load_examples(task, "train", data_root=str(data_root))[:3]
    tok = tiny_backbone.tokenizer
    model = adapter_method("full").attach(tiny_backbone.model, None, 0).eval()
    g, x = score_examples(model, tok, task, examples, ScoringOptions(gradients=True)).gradients
    weight = model.get_decoder().layers[-1].mlp.down_proj.weight
    for row, ex in enumerate(examples):
        expected = backward_gradient(model, encode_prompt(tok, ex.prompt), label_ids(tok, task, ex.prompt), weight)
        np.testing.assert_allclose(np.outer(g[row], x[row]), expected, atol=1e-5, rtol=1e-3)


def test_a_post_mlp_norm_is_differentiated_through(tiny_backbone, data_root):
    """Gemma normalises the MLP's output before the residual add; the gradient goes through it."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = tiny_backbone.tokenizer
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, head_dim=8, pad_token_id=tok.pad_token_id,
                              max_position_embeddings=512, sliding_window=64)
    base = Gemma3ForCausalLM(config).eval()
    for param in base.parameters():
        param.requires_grad_(False)
    with torch.no_grad():  # a post-MLP norm weight away from its zero init, so that it matters
        base.model.layers[-1].post_feedforward_layernorm.weight.normal_(std=0.5)
    model = adapted(base)
    task = load_task("boolq")
    examples = load_examples(task, "train", data_root=str(data_root))[:3]
    g, a = score_examples(model, tok, task, examples, ScoringOptions(batch_size=3, gradients=True)).gradients
    down = model.get_decoder().layers[-1].mlp.down_proj
    b_weight = down.lora_B[down.active_adapters[0]].weight
    for row, ex in enumerate(examples):
        expected = backward_gradient(model, encode_prompt(tok, ex.prompt), label_ids(tok, task, ex.prompt), b_weight)
        np.testing.assert_allclose(np.outer(g[row], a[row]), expected, atol=1e-5, rtol=1e-3)


def test_settings_without_a_rank_one_gradient_are_refused_before_the_run(tiny_backbone, data_root, tmp_path):
    def refused(task_name, needle, **changes):
        task = load_task(task_name)
        examples = load_examples(task, "train", data_root=str(data_root))[:20]
        with pytest.raises(StarError, match=needle):
            ActiveLearningRun(smoke_config("badge", task=task_name, **changes), task, examples, examples[:3],
                              tiny_backbone, RunDir(tmp_path / "r"))
        assert not (tmp_path / "r" / "rounds.jsonl").exists()

    refused("sst2", "answers of one token each")  # several tokens a label under the test tokenizer
    refused("boolq", "DoRA|dora", finetune="dora")
    refused("boolq", "ia3", finetune="ia3")
    attention_only = LoraSettings(rank=4, alpha=8, target_modules=("q_proj", "v_proj"))
    refused("boolq", "does not adapt down_proj", lora=attention_only)


def test_a_badge_run_goes_end_to_end_and_repeats_exactly(tiny_backbone_factory, data_root, tmp_path):
    from test_loop import run

    task = load_task("boolq")
    data = (task, load_examples(task, "train", data_root=str(data_root))[:40],
            load_examples(task, "test", data_root=str(data_root))[:6])
    config = smoke_config("badge", task="boolq", n_rounds=2, warm_start_by="kmeans")
    first = run(config, tiny_backbone_factory(0), data, tmp_path / "a")
    picks = [r.selected_ids for r in first]
    assert [len(p) for p in picks] == [4, 3, 3] and len({i for p in picks for i in p}) == 10
    assert [r.selected_ids for r in run(config, tiny_backbone_factory(0), data, tmp_path / "b")] == picks
