"""Shared fixtures: a tiny randomly initialised Llama and a tokenizer trained here, no download."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


# STAR_TEST_DEVICE=cuda runs the tiny-model tests on a GPU (CI runs them on the CPU).
TEST_DEVICE = os.environ.get("STAR_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("STAR_DATA_ROOT", DATA_ROOT))
    if not root.is_dir():
        pytest.skip(f"benchmark data not found at {root}")
    return root


def _train_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>")


@pytest.fixture(scope="session")
def tiny_backbone_factory(data_root):
    """Build a fresh 2-layer Llama (seeded) with a BPE tokenizer trained on the task texts."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from star_al.models.backbones import prepare
    from star_al.models.hardware import Placement
    from star_al.data.catalog import load_task
    from star_al.data.tasks import load_examples

    texts = []
    for name in ("sst2", "obqa", "boolq", "gsm8k"):
        task = load_task(name)
        texts += [ex.prompt + ex.target for ex in load_examples(task, "train", data_root=str(data_root))[:200]]
    tokenizer = _train_tokenizer(texts)

    def build(seed: int = 0):
        torch.manual_seed(seed)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                             max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
        model = LlamaForCausalLM(config).to(TEST_DEVICE)
        return prepare("tiny-llama", "memory", model, tokenizer,
                       Placement(TEST_DEVICE, torch.float32, "test"))

    return build


@pytest.fixture
def tiny_backbone(tiny_backbone_factory):
    return tiny_backbone_factory(0)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_backbone_factory, tmp_path_factory) -> Path:
    """The tiny Llama saved as a Hugging Face model directory, for `star --model DIR` in-process."""
    backbone = tiny_backbone_factory(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    backbone.model.save_pretrained(folder)
    backbone.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def sst2_folder(data_root, tmp_path) -> Path:
    """A small sst2 data folder (60 train, 10 dev sentences) that a test may edit."""
    folder = tmp_path / "sst2-data"
    folder.mkdir()
    source = Path(data_root) / "sst2"
    (folder / "train.jsonl").write_text("".join((source / "train.jsonl").read_text().splitlines(True)[:60]))
    (folder / "dev.jsonl").write_text("".join((source / "dev.jsonl").read_text().splitlines(True)[:10]))
    return folder


@pytest.fixture
def unlabeled_pool(sst2_folder):
    """The sst2 folder with the answers taken out of train.jsonl; the answers kept aside by line."""
    lines = (sst2_folder / "train.jsonl").read_text().splitlines()
    answers = [json.loads(line)["label"] for line in lines]
    (sst2_folder / "train.jsonl").write_text("".join(json.dumps({"sentence": json.loads(line)["sentence"]}) + "\n"
                                                     for line in lines))
    return sst2_folder, answers
