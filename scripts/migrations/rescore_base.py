"""Score a run's pool with the frozen base model again and replace its base_scores.npz.

For run directories whose base scores were computed before a run released its adapter
(commit "loop: a run takes its LoRA adapter off the backbone"): in a sweep, or from a
shared cache entry written by one, they hold a tuned model's scores. Selections of
strategies without base scores are unaffected, so a probe can be rerun on the fixed file.

    .venv/bin/python scripts/migrations/rescore_base.py RUN_DIR [RUN_DIR ...]

Data from $STAR_DATA_ROOT (default ../shared/data), model cache from $STAR_CACHE.
"""

import argparse
import os

from star_al.models.backbones import load_backbone
from star_al.models.hardware import choose_placement
from star_al.al.base_scores import base_pool_scores
from star_al.al.streams import choose_pool
from star_al.al.run_dir import RunDir
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    args = parser.parse_args()
    backbones = {}
    for path in args.run_dirs:
        run_dir = RunDir(path)
        config = run_dir.read_config()
        task = load_task(config.task)
        pool = load_examples(task, "train", data_root=os.environ.get("STAR_DATA_ROOT", "../shared/data"),
                             data_dir=config.data_dir)
        if config.model not in backbones:
            backbones[config.model] = load_backbone(config.model, choose_placement(None, None))
        backbone = backbones[config.model]
        run_dir.base_scores_path.unlink(missing_ok=True)
        scores = base_pool_scores(config, task, backbone.model, backbone.tokenizer, {ex.id: ex for ex in pool},
                                  choose_pool(config, pool), run_dir, cache_root=None)
        print(f"{path}: base ME over {len(scores['ids'])} pool examples, mean {scores['me'].mean():.3f}")


if __name__ == "__main__":
    main()
