"""A strategy of your own, registered in your code, then run like a built-in one.

    python examples/custom_strategy.py [OUT]

Least confidence: rank by 1 - p(the model's answer). Registered as ranking, it combines
with STAR's components (`least-confident+dynamic`) and runs a whole curve with
`star_al.run` on the embedded SmolLM2 (smoke preset: seconds).
"""

import os
import sys
import tempfile

import numpy as np

import star_al


class LeastConfident(star_al.ScoredStrategy):
    """1 - p(answer): the PE of the model's own answer is -log p, so p = exp(-pe)."""

    measure = "pe"
    needs = star_al.Needs(tuned=frozenset({"pe"}))

    def score(self, view: star_al.ScoreView) -> np.ndarray:
        return 1.0 - np.exp(-view.tuned("pe").mean(axis=0))


star_al.register_strategy("least-confident", lambda config: LeastConfident(), ranks=True,
                          help="1 - p(answer) of the current model")

out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="star-custom-")
config = star_al.configure(task="sst2", strategy="least-confident+dynamic", preset="smoke", n_rounds=2,
                           data_root=os.environ.get("STAR_DATA_ROOT"))
rounds = star_al.run(config, out)
for record in rounds:
    print(f"round {record.round}: {record.n_labeled} labels, accuracy {100 * record.accuracy:.1f}%, "
          f"lambda {record.lambda_}")
