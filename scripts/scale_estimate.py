"""Memory and time of a paper-sized run on a 7B model, computed (README "Scaling out").

    python scripts/scale_estimate.py [--train-tps 3000] [--score-tps 9000] [--gpus 1]
                                     [--pool 1000000] [--pool-subsample 10000]

Memory: bf16 base weights (2 bytes a parameter), the LoRA weights (r 64 on every linear
layer of each block) with their fp32 gradients and AdamW's two fp32 moments, and the
activations of one training batch (Korthikanti et al. 2022, 34 s b h bytes a layer with
flash attention; with --gradient-checkpointing the layer inputs, 2 s b h, plus one layer's
full set). Time: tokens divided by tokens/s; plug in your own `star bench` figures
(training_tokens_per_s, scoring_tokens_per_s). Token counts come from the tasks' data
with the SmolLM2 tokenizer, a stand-in for Llama-2's (both BPE of 32k-49k tokens).

Each task's run is then priced again on a pool of --pool examples of the same length (a
million support tickets): scoring the whole unlabeled pool K times a round, after one base
pass over it, against scoring --pool-subsample candidates a round, K times with the tuned
model and once with the base model (a large pool's base scores are computed for the
candidates a round scores); training and evaluation cost what they cost on the paper's pool.
"""

from __future__ import annotations

import argparse
import statistics

# meta-llama/Llama-2-7b-hf's config.json
LLAMA2_7B = dict(params=6.738e9, hidden=4096, intermediate=11008, layers=32, heads=32, vocab=32000)
PAPER = {"gsm8k": (500, 500, 9), "boolq": (500, 500, 9), "obqa": (200, 200, 9)}
GB = 1e9


def lora_params(model: dict, rank: int) -> int:
    """r (d_in + d_out) per adapted projection: q, k, v, o (h -> h) and gate, up, down (h <-> i)."""
    h, i = model["hidden"], model["intermediate"]
    per_layer = 4 * rank * (h + h) + 3 * rank * (h + i)
    return per_layer * model["layers"]


def memory(model: dict, rank: int, batch: int, tokens: int, checkpointing: bool) -> dict:
    lora = lora_params(model, rank)
    h, layers = model["hidden"], model["layers"]
    activations = (2 * tokens * batch * h * layers + 34 * tokens * batch * h) if checkpointing \
        else 34 * tokens * batch * h * layers
    return {"weights_bf16": 2 * model["params"] / GB, "lora_fp32_weights_grads_adam": 16 * lora / GB,
            "activations": activations / GB, "lora_params": lora}


def token_counts(task_name: str) -> tuple[float, float, int, int]:
    """Mean prompt+answer tokens of train and test examples, and the split sizes."""
    from star_al.data.catalog import load_task
    from star_al.data.tasks import default_data_root, load_examples
    from star_al.models.backbones import default_cache_root, resolve_model_dir
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("smollm2-135m", default_cache_root()))
    task = load_task(task_name)
    root = str(default_data_root())
    train, test = load_examples(task, "train", data_root=root), load_examples(task, "test", data_root=root)

    def mean_tokens(examples):
        sample = examples[:: max(1, len(examples) // 500)]
        return statistics.mean(len(tokenizer(ex.prompt + ex.target).input_ids) for ex in sample)

    return mean_tokens(train), mean_tokens(test), len(train), len(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-tps", type=float, default=3000.0, help="training tokens/s per GPU")
    parser.add_argument("--score-tps", type=float, default=9000.0, help="scoring tokens/s per GPU (forward only)")
    parser.add_argument("--gpus", type=int, default=1)
    parser.add_argument("--mc-passes", type=int, default=3)
    parser.add_argument("--pool", type=int, default=1_000_000, help="a large pool's size, priced after each task")
    parser.add_argument("--pool-subsample", type=int, default=10_000, help="candidates scored a round in it")
    args = parser.parse_args()
    model = LLAMA2_7B
    print(f"LoRA r 64 on all linear layers of Llama-2-7B: {lora_params(model, 64) / 1e6:.1f}M parameters")
    from star_al.data.catalog import load_task

    for name, (warm, query, rounds) in PAPER.items():
        training = load_task(name).training
        train_tokens, test_tokens, n_train, n_test = token_counts(name)
        seq = int(max(train_tokens, test_tokens) * 1.5)  # a length-bucketed batch's padded width, roughly
        for checkpointing in (False, True):
            m = memory(model, 64, training["batch_size"], seq, checkpointing)
            total = m["weights_bf16"] + m["lora_fp32_weights_grads_adam"] + m["activations"]
            print(f"{name}: batch {training['batch_size']} x ~{seq} tokens, checkpointing {checkpointing}: "
                  f"weights {m['weights_bf16']:.1f} GB + LoRA/grads/AdamW {m['lora_fp32_weights_grads_adam']:.1f} GB"
                  f" + activations {m['activations']:.1f} GB = {total:.1f} GB per GPU")
        labels = [warm + k * query for k in range(rounds + 1)]
        trained = sum(labels) * training["epochs"] * train_tokens
        # Each query round scores the unlabeled pool: one deterministic pass is what `me` needs,
        # MC dropout K passes (me+star); the test set is evaluated after every round.
        scored = sum(n_train - n for n in labels[:-1]) * args.mc_passes * train_tokens
        evaluated = (rounds + 1) * n_test * test_tokens
        seconds = trained / (args.train_tps * args.gpus) + (scored + evaluated) / (args.score_tps * args.gpus)
        print(f"{name}: pool {n_train}, test {n_test}, ~{train_tokens:.0f}/{test_tokens:.0f} tokens an example; "
              f"{trained / 1e6:.1f}M training tokens, {scored / 1e6:.1f}M scoring (K={args.mc_passes}), "
              f"{evaluated / 1e6:.1f}M evaluation -> {seconds / 3600:.1f} h for the run on {args.gpus} GPU(s) "
              f"(last round alone {labels[-1] * training['epochs'] * train_tokens / (args.train_tps * args.gpus) / 60:.0f}"
              " min of training)")
        score_rate = args.score_tps * args.gpus
        rest = trained / (args.train_tps * args.gpus) + evaluated / score_rate
        whole = (args.pool + sum(args.pool - n for n in labels[:-1]) * args.mc_passes) * train_tokens
        subset = rounds * args.pool_subsample * (args.mc_passes + 1) * train_tokens
        print(f"{name} on a pool of {args.pool:,}: scoring it whole (one base pass, then K={args.mc_passes} a round) "
              f"{whole / 1e6:,.0f}M tokens -> {(rest + whole / score_rate) / 3600:.1f} h (the base pass "
              f"{args.pool * train_tokens / score_rate / 3600:.1f} h of it, before the first query); with --pool-subsample "
              f"{args.pool_subsample:,} (K + 1 passes over the subset a round) {subset / 1e6:.0f}M tokens -> "
              f"{(rest + subset / score_rate) / 3600:.1f} h, {subset / rounds / score_rate / 60:.0f} min of scoring a round")


if __name__ == "__main__":
    main()
