"""Your own transformers model object, your own task, a pool from a list of dicts.

    python examples/own_transformers_model.py [OUT]

Any causal LM that transformers builds works the same way (a fine-tuned checkpoint you
loaded, a model you built); here a tiny randomly initialised Llama with a tokenizer
trained on the spot, so the example needs no download and takes seconds.
"""

import sys
import tempfile

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import star_al

tickets = [("my card was charged twice", "billing"), ("the app crashes on start", "bug"),
           ("how do I export my data", "question"), ("refund for last month please", "billing"),
           ("button does nothing when clicked", "bug"), ("where is the settings page", "question")] * 6

bpe = Tokenizer(models.BPE(unk_token=None))
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.decoder = decoders.ByteLevel()
bpe.train_from_iterator([text for text, _ in tickets] + ["Ticket: Team: billing bug question"],
                        trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="<eos>")
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))

task = star_al.make_task("tickets", prompt="Ticket: {text}\nTeam:", labels=["billing", "bug", "question"],
                         answer="team")
pool = [{"text": text} for text, _ in tickets]
test = [{"text": text, "team": team} for text, team in tickets[:6]]
out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="star-own-model-")

learner = star_al.Learner(model, task, pool=pool, test=test, out=out, tokenizer=tokenizer,
                          strategy="me+dynamic", preset="smoke", warm_start=6, query_size=6, n_rounds=1,
                          lora={"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
for _ in range(2):
    batch = learner.query()
    learner.teach({i: tickets[i][1] for i in batch.ids})
    record = learner.fit()
    print(f"round {record.round}: picked {record.selected_ids}, accuracy {100 * record.accuracy:.0f}%")
print("saved a copy at", learner.save(out + "-copy"))
