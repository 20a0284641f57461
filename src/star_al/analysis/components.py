"""Whether STAR's parts act in a run: lambda per query, and how many picks MC dropout changed.

MC dropout ranks by the mean of K stochastic passes; the question is whether that mean
picks other examples than one such pass would. The round's score file keeps every pass
(scores/round-NN.npz), so the run's own strategy is asked again with the first pass
alone and its picks compared with the ones the run made. (L2 on B acts through training;
what it changes is measured by training twice, which this post-hoc count does not do.)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from star_al.analysis.tables import markdown_grid
from star_al.config import RunConfig
from star_al.files import load_npz
from star_al.strategies.base import ScoreView
from star_al.strategies.registry import recipe_of


def mc_picks_changed(run_path: Path, config: dict, rounds: list[dict]) -> list[int | None] | None:
    """Per query round, how many of the picks differ from one pass's; None where no score file is kept."""
    run_config = RunConfig.from_dict(config)
    if not recipe_of(run_config).uses("mc"):
        return None
    whole = replace(run_config, pool_subsample=None)  # the score file holds the candidates already drawn
    strategy = recipe_of(whole).build(whole)
    if strategy.needs.embeddings:  # the score file keeps no hidden states to cluster again
        return [None] * len(rounds[1:])
    changed = []
    for record in rounds[1:]:
        path = Path(run_path) / "scores" / f"round-{record['round']:02d}.npz"
        if not path.is_file():
            changed.append(None)
            continue
        arrays = load_npz(path)
        ids = arrays["ids"]
        base = {"ids": ids, **{key[5:]: arrays[key] for key in arrays if key.startswith("base_")}}
        one_pass = {key: arrays[key][:1] for key in ("me", "pe", "pe_gold") if key in arrays}
        view = ScoreView(ids, record["round"] - 1, strategy.needs, lambda _, __: one_pass, base,
                         lambda purpose: np.random.default_rng(0))
        picks = strategy.select(view, len(record["selected_ids"]), np.random.default_rng(0)).ids
        changed.append(len(set(record["selected_ids"]) - set(picks)))
    return changed


def components_table(runs) -> str:
    """One line per run that uses dynamic or MC: lambda per query and the picks MC changed."""
    body = []
    for run in sorted(runs, key=lambda r: (r.task, r.strategy, str(r.seed))):
        recipe = recipe_of(RunConfig.from_dict(run.config)) if "n_rounds" in run.config else None
        if recipe is None or not (recipe.uses("dynamic") or recipe.uses("mc")):
            continue
        lambdas = ", ".join("-" if r.get("lambda") is None else f"{r['lambda']:.2f}" for r in run.rounds[1:])
        changed = mc_picks_changed(run.path, run.config, run.rounds) if recipe.uses("mc") else None
        mc_text = "not used" if changed is None else ", ".join("n/a" if c is None else str(c) for c in changed)
        size = run.config.get("query_size", "?")
        body.append([run.task, run.strategy, str(run.seed), lambdas, f"{mc_text} (of {size})"])
    if not body:
        return ""
    return ("Per query round: the dynamic mix's lambda, and how many of the picks averaging the MC passes "
            "changed against the first pass alone (n/a: the round's score file is not kept).\n\n"
            + markdown_grid(["task", "strategy", "seed", "lambda per query", "picks changed by MC"], body))


def decay_effect(config, task, pool, test, backbone, rounds, cache_root=None) -> list[dict]:
    """Per query round r: the picks L2 on B changed, and how much it shrank B (`rounds`: the run's
    RoundRecords, RunDir.read_rounds).

    For each r, round r-1's labeled set is trained twice from the same seed, with the run's
    B decay and without it; each model then makes round r's query as the run would (same
    candidates, MC passes and mix). Returns, per round, the number of picks that differ and
    1 - ||B_decay|| / ||B_plain|| over all adapter B matrices.
    """
    import tempfile

    import torch

    from star_al.al.base_scores import base_pool_scores
    from star_al.al.loop import ActiveLearningRun
    from star_al.al.run_dir import RunDir

    by_id = {ex.id: ex for ex in pool}
    effects = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = {name: ActiveLearningRun(cfg, task, pool, test, backbone, RunDir(Path(tmp) / name),
                                            cache_root=cache_root)
                    for name, cfg in (("decay", config), ("plain", replace(config, b_decay_strength=0.0)))}
        first = variants["decay"]
        base = base_pool_scores(first.config, task, backbone.model, backbone.tokenizer, by_id, first.pool_ids,
                                first.run_dir, cache_root, backbone.placement.dtype)
        for r in range(1, len(rounds)):
            labeled = [by_id[i] for record in rounds[:r] for i in record.selected_ids]
            picks, norms = {}, {}
            for name, run in variants.items():
                run._fine_tune(r - 1, labeled)
                norms[name] = float(torch.sqrt(sum((p.detach().float() ** 2).sum() for n, p in
                                                   run.model.named_parameters() if run.adapter.is_decayed(n))))
                run.run_dir.clear_pending()
                picks[name] = run._query(r, rounds[:r], base, {}).ids
                run._release_adapter()
            effects.append({"round": r, "picks_changed": len(set(picks["decay"]) - set(picks["plain"])),
                            "of": len(picks["decay"]), "b_shrink": 1 - norms["decay"] / norms["plain"],
                            # the decay twin redoes the run's own query: with today's code the same picks
                            "matches_run": sorted(picks["decay"]) == sorted(rounds[r].selected_ids)})
    return effects
