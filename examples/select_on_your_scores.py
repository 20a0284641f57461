"""STAR's acquisition step alone, on scores from your own model and training code.

    python examples/select_on_your_scores.py

You computed, for each unlabeled example, the maximum entropy of your fine-tuned model's
answer over 3 MC-dropout passes, the same of the untuned model, and a hidden-state
embedding; star-al picks the batch: the dynamic mix of base and tuned scores (lambda
falls from round to round), MC averaging, and a diversity component.
"""

import numpy as np

import star_al

rng = np.random.default_rng(0)
ids = np.arange(1000, 1200)                       # your pool's ids
tuned_me = rng.gamma(2.0, 0.2, size=(3, 200))     # [passes, n]: your model, dropout on
base_me = rng.gamma(2.0, 0.3, size=200)           # [n]: the untuned model
embeddings = rng.normal(size=(200, 16))           # [n, hidden]

for t in range(3):                                # three query rounds of a five-round budget
    query = star_al.select("me+star", k=8, ids=ids, scores={"me": tuned_me}, base_scores={"me": base_me},
                           query_index=t, n_rounds=5)
    print(f"query {t}: lambda {query.info['lambda']:.2f}, picks {query.ids}")

diverse = star_al.select("me+dynamic+mc+kmeans", k=8, ids=ids, scores={"me": tuned_me},
                         base_scores={"me": base_me}, embeddings=embeddings, query_index=0, n_rounds=5)
print("spread over 8 clusters:", diverse.ids)
assert diverse.ids == star_al.select("me+dynamic+mc+kmeans", k=8, ids=ids, scores={"me": tuned_me},
                                     base_scores={"me": base_me}, embeddings=embeddings,
                                     query_index=0, n_rounds=5).ids   # same inputs, same picks
