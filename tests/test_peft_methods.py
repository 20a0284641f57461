"""LoRA, DoRA and IA3 through PEFT's configs on a tiny real Llama: each trains, saves, loads back,
detaches cleanly, and the STAR components it cannot carry are refused in one line."""

import json

import numpy as np
import pytest
import torch

from star_al.al.loop import ActiveLearningRun
from star_al.al.run_config import checked
from star_al.al.run_dir import RunDir
from star_al.config import RunConfig
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples
from star_al.engine.scoring import ScoringOptions, mc_dropout_active, score_examples
from star_al.config import LoraSettings, TrainSettings
from star_al.engine.training import optimizer_groups, train_adapter
from star_al.errors import StarError
from star_al.models.adapters import ADAPTERS, load_adapter, saved_method
from test_scoring_and_training import nonzero_b

SETTINGS = LoraSettings(rank=4, alpha=8, dropout=0.1)


@pytest.fixture
def sst2(data_root):
    task = load_task("sst2")
    return task, load_examples(task, "train", data_root=str(data_root))[:60], \
        load_examples(task, "test", data_root=str(data_root))[:10]


def logits(model, tokenizer, text="a fine, funny film"):
    ids = torch.tensor([tokenizer(text).input_ids], device=next(model.parameters()).device)
    with torch.no_grad():
        return model(input_ids=ids).logits


def smoke_config(strategy, finetune, **changes):
    values = dict(task="sst2", strategy=strategy, seed=3, preset="smoke", warm_start=4, query_size=3,
                  n_rounds=2, pool_size=30, mc_passes=2, lora=LoraSettings(rank=4, alpha=8, dropout=0.2),
                  train=TrainSettings(epochs=1, batch_size=4, learning_rate=1e-3), finetune=finetune)
    values.update(changes)
    return checked(RunConfig(**values))


@pytest.mark.parametrize("name", ["lora", "dora", "ia3"])
def test_each_method_trains_saves_loads_back_and_detaches_to_the_untouched_base(tiny_backbone, sst2, tmp_path,
                                                                                  name):
    task, pool, _ = sst2
    method, model, tok = ADAPTERS.get(name), tiny_backbone.model, tiny_backbone.tokenizer
    base_logits = logits(model, tok)
    peft_model = method.attach(model, SETTINGS, seed=0)
    adapter = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert adapter and all(method.is_adapter_parameter(n) for n in adapter)
    result = train_adapter(peft_model, tok, task, pool[:8], TrainSettings(epochs=4, batch_size=4, learning_rate=3e-2),
                           seed=0, desc=None)
    assert result.steps == 8 and np.mean(result.losses[-2:]) < np.mean(result.losses[:2])
    changed = [n for n, p in peft_model.named_parameters() if n in adapter and not torch.equal(p, adapter[n])]
    assert changed
    trained_logits = logits(peft_model, tok)
    method.save(peft_model, tmp_path / "adapter", "org/tiny")
    assert saved_method(tmp_path / "adapter") is method
    base = method.detach(peft_model)
    torch.testing.assert_close(logits(base, tok), base_logits, rtol=0, atol=0)
    loaded = load_adapter(base, tmp_path / "adapter")
    torch.testing.assert_close(logits(loaded, tok), trained_logits, rtol=0, atol=0)
    torch.testing.assert_close(logits(method.detach(loaded), tok), base_logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["lora", "dora", "ia3"])
def test_each_method_trains_under_bf16_autocast_and_is_held_in_bf16_after(tiny_backbone, sst2, name):
    """A bf16 base trains its fp32 adapter under autocast (engine/training.py), then holds it in bf16."""
    task, pool, _ = sst2
    method, model = ADAPTERS.get(name), tiny_backbone.model.to(torch.bfloat16)
    peft_model = method.attach(model, SETTINGS, seed=0)
    result = train_adapter(peft_model, tiny_backbone.tokenizer, task, pool[:4],
                           TrainSettings(epochs=1, batch_size=4, learning_rate=1e-2), seed=0, desc=None)
    assert result.steps == 1 and np.isfinite(result.losses).all()
    adapter = [p for n, p in peft_model.named_parameters() if method.is_adapter_parameter(n)]
    assert adapter and all(p.dtype == torch.bfloat16 for p in adapter)


def test_dora_runs_on_peft_forward_and_its_mc_passes_draw_dropout(tiny_backbone, sst2):
    from star_al.models.fast_lora import BitDropout, _lora_linear_class

    task, pool, _ = sst2
    peft_model = ADAPTERS.get("dora").attach(tiny_backbone.model, LoraSettings(rank=4, alpha=8, dropout=0.5), 0)
    _, fast_linear = _lora_linear_class()
    assert not any(isinstance(m, (fast_linear, BitDropout)) for m in peft_model.modules())
    assert any("lora_magnitude_vector" in n for n, _ in peft_model.named_parameters())
    nonzero_b(peft_model)
    tok = tiny_backbone.tokenizer
    torch.manual_seed(0)
    mc = score_examples(peft_model, tok, task, pool[:6], ScoringOptions(passes=3, batch_size=4))
    assert not np.allclose(mc.me[0], mc.me[1])
    torch.manual_seed(0)
    np.testing.assert_array_equal(score_examples(peft_model, tok, task, pool[:6],
                                                 ScoringOptions(passes=3, batch_size=4)).me, mc.me)
    assert not any(m.training for m in peft_model.modules())
    plain = [score_examples(peft_model, tok, task, pool[:6], ScoringOptions(passes=1)).me for _ in range(2)]
    np.testing.assert_array_equal(*plain)


def test_dora_merged_deterministic_pass_equals_unmerged_and_restores_base_weights_exactly(tiny_backbone, sst2):
    """Single passes on an fp32 base fold the adapter in (engine/scoring.py merged_adapter); DoRA's too."""
    from star_al.data.batching import encode_prompt
    from star_al.engine.scoring import merged_adapter, next_token_stats

    task, pool, _ = sst2
    tok = tiny_backbone.tokenizer
    prompts = [encode_prompt(tok, ex.prompt) for ex in pool[:8]]
    base = next_token_stats(tiny_backbone.model, prompts, [5, 7], tok.pad_token_id, batch_size=4)
    peft_model = ADAPTERS.get("dora").attach(tiny_backbone.model, SETTINGS, 0)
    for name, param in peft_model.named_parameters():  # a trained-looking B and magnitude
        if "lora_B" in name or "lora_magnitude_vector" in name:
            param.data += 0.2 * torch.randn_like(param)
    peft_model.eval()
    unmerged = next_token_stats(peft_model, prompts, [5, 7], tok.pad_token_id, batch_size=4)
    before = {n: p.clone() for n, p in peft_model.named_parameters() if "base_layer" in n}
    with merged_adapter(peft_model):
        assert any(not torch.equal(p, before[n]) for n, p in peft_model.named_parameters() if "base_layer" in n)
        merged = next_token_stats(peft_model, prompts, [5, 7], tok.pad_token_id, batch_size=4)
    np.testing.assert_allclose(merged[0], unmerged[0], atol=1e-4)
    assert np.abs(unmerged[0] - base[0]).max() > 1e-3  # the adapter moves the scores: the match is not vacuous
    assert all(torch.equal(p, before[n]) for n, p in peft_model.named_parameters() if "base_layer" in n)


def test_star_train_trains_and_saves_the_named_method_and_refuses_full(tiny_model_dir, data_root, tmp_path, capsys):
    from star_al.cli import main

    args = ["train", "--task", "sst2", "--n-train", "4", "--model", str(tiny_model_dir), "--data-root", str(data_root),
            "--device", "cpu", "--dtype", "float32", "--epochs", "1", "--limit", "3", "--no-baseline"]
    assert main([*args, "--peft", "ia3", "--out", str(tmp_path / "T")]) == 0
    assert json.loads((tmp_path / "T" / "adapter" / "adapter_config.json").read_text())["peft_type"] == "IA3"
    assert json.loads((tmp_path / "T" / "summary.json").read_text())["peft"] == "ia3"
    capsys.readouterr()
    assert main([*args, "--peft", "full", "--out", str(tmp_path / "F")]) == 1
    assert "star train trains an adapter" in capsys.readouterr().err


def test_ia3_scales_keys_values_and_the_ffn_input_and_has_no_dropout_or_b(tiny_backbone):
    method = ADAPTERS.get("ia3")
    peft_model = method.attach(tiny_backbone.model, SETTINGS, seed=0)
    scaled = {n.split(".")[-3]: p.shape for n, p in peft_model.named_parameters() if "ia3_l" in n}
    hidden, inner, kv = 32, 64, 16  # conftest's tiny Llama: 2 of 4 heads carry keys and values
    assert scaled == {"k_proj": (kv, 1), "v_proj": (kv, 1), "down_proj": (1, inner)}
    assert method.dropout_modules(peft_model) == []
    decayed, plain = optimizer_groups(peft_model, 0.5)
    assert decayed["params"] == [] and len(plain["params"]) == 3 * 2
    with pytest.raises(StarError, match="dropout"):
        with mc_dropout_active(peft_model):
            pass
    method.detach(peft_model)
    named = method.attach(tiny_backbone.model, LoraSettings(target_modules=("q_proj", "down_proj")), seed=0)
    assert {n.split(".")[-3] for n, _ in named.named_parameters() if "ia3_l" in n} == {"q_proj", "down_proj"}
    assert named.peft_config["default"].feedforward_modules == {"down_proj"}
    method.detach(named)
    assert hidden == tiny_backbone.model.config.hidden_size


def test_ia3_without_default_modules_for_the_architecture_asks_for_target_modules(tiny_backbone, monkeypatch):
    monkeypatch.setattr(tiny_backbone.model.config, "model_type", "made-up")
    with pytest.raises(StarError, match="ia3 knows no default modules for model type 'made-up'"):
        ADAPTERS.get("ia3").check_targets(tiny_backbone.model, SETTINGS)


def test_l2_on_dora_decays_lora_b_only_not_a_or_the_magnitude(tiny_backbone):
    peft_model = ADAPTERS.get("dora").attach(tiny_backbone.model, SETTINGS, seed=0)
    decayed, plain = optimizer_groups(peft_model, 0.5)
    names = {id(p): n for n, p in peft_model.named_parameters()}
    assert decayed["weight_decay"] == 0.5 and plain["weight_decay"] == 0.0
    assert decayed["params"] and all("lora_B" in names[id(p)] for p in decayed["params"])
    kinds = {names[id(p)].split(".")[-3] for p in plain["params"]}
    assert kinds == {"lora_A", "lora_magnitude_vector"}


@pytest.mark.parametrize("strategy, component", [("me+mc", "mc"), ("me+dynamic+l2", "l2"), ("me+star", "mc")])
def test_ia3_refuses_the_components_it_cannot_carry_in_one_line(strategy, component):
    with pytest.raises(StarError) as refusal:
        smoke_config(strategy, "ia3")
    message = str(refusal.value)
    assert "\n" not in message and f"{component} in strategy" in message and "ia3 does not have" in message


def test_prefix_and_prompt_tuning_are_refused_with_the_reason():
    for name in ("prefix", "prompt"):
        with pytest.raises(StarError, match=f"{name} tuning is not offered: .*KV cache"):
            smoke_config("me", name)
    with pytest.raises(StarError, match="unknown adapter method 'lorra'; did you mean lora"):
        smoke_config("me", "lorra")


def test_the_cli_refuses_ia3_with_mc_in_one_line_and_exit_1(tiny_model_dir, data_root, tmp_path, capsys):
    from star_al.cli import main

    code = main(["run", "--task", "sst2", "--strategy", "me+star", "--preset", "smoke", "--peft", "ia3",
                 "--model", str(tiny_model_dir), "--data-root", str(data_root), "--out", str(tmp_path / "R")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "mc in strategy 'me+star' needs the adapter's dropout" in err[0]
    assert not (tmp_path / "R").exists()


class Killed(Exception):
    pass


@pytest.mark.parametrize("name, strategy", [("dora", "me+star"), ("ia3", "me+dynamic")])
def test_two_round_run_with_the_method_saves_its_adapter_and_resumes_identically(
        tiny_backbone_factory, sst2, tmp_path, name, strategy):
    from star_al.labeling.oracle import GoldOracle

    class KillingOracle(GoldOracle):
        def label(self, batch):
            if batch.round == 2:
                raise Killed
            return super().label(batch)

    task, pool, test = sst2
    config = smoke_config(strategy, name)

    def run(path, oracle=None):
        return ActiveLearningRun(config, task, pool, test, tiny_backbone_factory(0), RunDir(path), oracle=oracle).run()

    whole = run(tmp_path / "whole")
    assert [r.n_labeled for r in whole] == [4, 7, 10]
    saved = json.loads((tmp_path / "whole" / "adapter" / "adapter_config.json").read_text())
    assert (saved["peft_type"], saved.get("use_dora", False)) == (("LORA", True) if name == "dora" else ("IA3", False))
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["finetune"] == name
    with pytest.raises(Killed):
        run(tmp_path / "killed", KillingOracle())
    resumed = run(tmp_path / "killed")
    strip = lambda rounds: [{k: v for k, v in r.to_dict().items() if k != "timings"} for r in rounds]  # noqa: E731
    assert strip(resumed) == strip(whole)


def test_export_adapter_names_the_method_in_the_model_card(tiny_backbone, sst2, tmp_path, capsys):
    from star_al.cli import main

    task, pool, test = sst2
    ActiveLearningRun(smoke_config("random", "dora", n_rounds=0), task, pool, test, tiny_backbone,
                      RunDir(tmp_path / "R")).run()
    assert main(["export-adapter", str(tmp_path / "R"), str(tmp_path / "X"), "--base-model", "org/tiny"]) == 0
    card = (tmp_path / "X" / "README.md").read_text()
    assert "tags: [dora," in card and "A DoRA adapter for `org/tiny`" in card
    assert json.loads((tmp_path / "X" / "adapter_config.json").read_text())["use_dora"] is True


def test_a_report_sets_methods_side_by_side_and_run_dirs_are_named_by_method(tmp_path):
    from star_al.analysis.report import find_runs
    from star_al.runs import default_run_dir

    for method in ("lora", "dora"):
        run = tmp_path / method
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"task": "sst2", "strategy": "me+star", "seed": 0,
                                                     "n_rounds": 1, "finetune": method}))
        (run / "rounds.jsonl").write_text("".join(json.dumps({"round": i, "n_labeled": 4 + 4 * i, "accuracy": 0.5})
                                                  + "\n" for i in range(2)))
    assert sorted(run.strategy for run in find_runs([tmp_path])) == ["me+star", "me+star-dora"]
    assert default_run_dir("runs", smoke_config("me+dynamic", "ia3")).parts[-2] == "me+dynamic-ia3"
    assert default_run_dir("runs", smoke_config("me+star", "lora")).parts[-2] == "me+star"
