"""Diversity-aware batches and the cold start: the hand-written pieces on known answers, the
hidden states the scoring pass keeps, and whole runs on a tiny real Llama."""

import json

import numpy as np
import pytest
import torch

from star_al.al.loop import ActiveLearningRun
from star_al.al.run_dir import RunDir
from star_al.data.batching import encode_pair, encode_prompt
from star_al.data.catalog import load_task
from star_al.data.tasks import load_examples
from star_al.engine.scoring import ScoringOptions, score_examples
from star_al.config import LoraSettings, TrainSettings
from star_al.errors import StarError
from star_al.files import load_npz
from star_al.strategies.base import Needs, ScoreView
from star_al.strategies.diversity import (Badge, ClusterTopK, KMeansCentroids, RankOne, k_center_greedy, kmeans,
                                          kmeans_pp_seeds, top_per_cluster, typicality, typiclust_picks)
from star_al.strategies.uncertainty import Uncertainty
from conftest import TEST_DEVICE
from test_loop import run, sst2_data  # noqa: F401 (a fixture)
from test_loop import smoke_config as loop_config


# -- the hand-written pieces, on answers worked out by hand --------------------------------

def test_k_center_takes_the_point_farthest_from_the_labeled_set_then_from_the_picks_too():
    points = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    picked, distances = k_center_greedy(points, np.array([[0.0]]), 2)
    assert picked == [4, 2] and distances == [11.0, 2.0]  # 11 is farthest from 0; then 2 is farthest from {0, 11}


def test_k_center_without_a_labeled_set_starts_at_the_point_nearest_the_mean():
    points = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])  # mean 4.8: 2 is nearest
    picked, _ = k_center_greedy(points, np.zeros((0, 1)), 3)
    assert picked == [2, 4, 0]


def test_k_center_never_picks_a_point_twice_among_duplicates():
    picked, _ = k_center_greedy(np.zeros((4, 2)), np.zeros((1, 2)), 3)
    assert len(set(picked)) == 3


def test_badge_seeding_starts_at_the_largest_norm_then_the_far_outlier():
    near = np.array([[10.0, 0.0], [9.99, 0.01], [9.98, -0.01], [9.99, 0.02], [9.97, 0.0]])
    points = np.concatenate([near, [[-9.0, 0.0]]])  # index 5: norm 9, but 19 away from the first seed
    for seed in range(20):
        seeds = kmeans_pp_seeds(points, 2, np.random.default_rng(seed))
        assert seeds == [0, 5]


def test_badge_seeding_draws_in_proportion_to_the_squared_distance():
    points = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # first seed [2, 0]; then weights 1 and 4
    rng = np.random.default_rng(0)
    second = [kmeans_pp_seeds(points, 2, rng)[1] for _ in range(4000)]
    assert np.mean(np.array(second) == 2) == pytest.approx(0.8, abs=0.02)


def test_badge_seeding_goes_on_uniformly_when_every_weight_is_zero():
    seeds = kmeans_pp_seeds(np.array([[3.0, 4.0], [3.0, 4.0], [3.0, 4.0], [0.0, 0.0]]), 4, np.random.default_rng(1))
    assert seeds[:2] == [0, 3] and sorted(seeds) == [0, 1, 2, 3]


def test_rank_one_points_measure_what_their_outer_products_measure():
    rng = np.random.default_rng(4)
    points = RankOne(rng.normal(size=(7, 5)), rng.normal(size=(7, 3)))
    dense = points.dense()
    np.testing.assert_allclose(dense[2], np.outer(points.left[2], points.right[2]).ravel())
    np.testing.assert_allclose(points.norms(), np.linalg.norm(dense, axis=1))
    for position in (0, 4):
        np.testing.assert_allclose(points.squared_distances_to(position), ((dense - dense[position]) ** 2).sum(1),
                                   atol=1e-9)
    assert kmeans_pp_seeds(points, 4, np.random.default_rng(9)) == kmeans_pp_seeds(dense, 4, np.random.default_rng(9))


def test_typicality_is_one_over_the_mean_distance_to_the_nearest_neighbours():
    points = np.array([[0.0], [1.0], [3.0]])
    np.testing.assert_allclose(typicality(points, 1), [1.0, 1.0, 0.5])
    np.testing.assert_allclose(typicality(points, 20), [1 / 2.0, 1 / 1.5, 1 / 2.5])  # K = min(20, n - 1) = 2
    assert typicality(np.array([[5.0]]), 20).tolist() == [0.0]


def test_typiclust_takes_the_most_typical_point_of_the_largest_uncovered_clusters():
    # cluster 0: covered by a label; cluster 1: five candidates; cluster 2: three; cluster 3: two
    candidate_labels = np.array([0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 3, 3])
    points = np.array([[0.0], [1.0], [10.0], [11.0], [12.0], [13.0], [20.0], [30.0], [31.0], [33.0], [50], [51]])
    typical, chosen = typiclust_picks(candidate_labels, np.array([0]), points, 2)
    # mean distance to the 4 others in cluster 1: 10: 4, 11: 3.25, 12: 3, 13: 3.25, 20: 8.5; cluster 2 (K = 2):
    # 30: 2, 31: 1.5, 33: 2.5. Clusters go by fewest labels, then size: 1, 2, 3, then the covered 0.
    assert chosen == [4, 8]
    np.testing.assert_allclose(typical[7:10], [1 / 2, 1 / 1.5, 1 / 2.5])
    _, all_of_them = typiclust_picks(candidate_labels, np.array([0]), points, 5)
    assert all_of_them == [4, 8, 10, 0, 3]  # round and round: cluster 1 again, without 12 (11 ties 13: first)


def separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    points = np.concatenate([c + rng.normal(scale=0.5, size=(6, 2)) for c in centres])
    return points, np.repeat([0, 1, 2], 6)


def test_kmeans_selection_takes_one_candidate_per_well_separated_cluster():
    points, truth = separated_clusters()
    labels, _ = kmeans(points, 3, np.random.default_rng(0))
    assert len({(a, b) for a, b in zip(labels, truth)}) == 3  # the clusters found are the true ones
    scores = np.arange(18, dtype=float)[::-1]  # the first of each true cluster scores highest within it
    ids = np.arange(100, 118)
    picked = top_per_cluster(ids, scores, labels, 3)
    assert sorted(picked) == [0, 6, 12]


def view_over(points, scores=None, answer_probs=None, gradients=None):
    ids = np.arange(100, 100 + len(points))

    def scorer(scored_ids, needs):
        rows = np.searchsorted(ids, scored_ids)
        out = {"embeddings": points[rows]}
        if scores is not None:
            out["me"] = scores[None, rows]
        if answer_probs is not None:
            out["label_probs"] = answer_probs[rows]
        if gradients is not None:
            out["gradient_g"], out["gradient_a"] = gradients[0][rows], gradients[1][rows]
        return out

    return lambda strategy: ScoreView(ids, 1, strategy.needs, scorer, None, lambda p: np.random.default_rng(p))


def test_kmeans_component_and_strategy_pick_one_per_cluster_deterministically():
    points, truth = separated_clusters()
    scores = np.random.default_rng(1).random(18)
    ranked = ClusterTopK(Uncertainty("me"))
    query = ranked.select(view_over(points, scores)(ranked), 3, np.random.default_rng(5))
    expected = [100 + int(np.flatnonzero(truth == c)[np.argmax(scores[truth == c])]) for c in range(3)]
    assert sorted(query.ids) == sorted(expected) and query.scores == sorted(query.scores, reverse=True)
    assert query.ids == ranked.select(view_over(points, scores)(ranked), 3, np.random.default_rng(5)).ids
    centroids = KMeansCentroids()
    picks = centroids.select(view_over(points)(centroids), 3, np.random.default_rng(5)).ids
    assert sorted(truth[np.array(picks) - 100]) == [0, 1, 2]


def test_badge_seeds_on_the_gradient_factors_starting_at_the_largest_gradient():
    points, _ = separated_clusters()
    rng = np.random.default_rng(2)
    g, a = rng.normal(size=(18, 6)), rng.normal(size=(18, 4))
    badge = Badge()
    query = badge.select(view_over(points, gradients=(g, a))(badge), 3, np.random.default_rng(0))
    norms = np.linalg.norm(g, axis=1) * np.linalg.norm(a, axis=1)
    assert query.ids[0] == 100 + int(np.argmax(norms)) and len(set(query.ids)) == 3
    assert query.ids == [100 + p for p in kmeans_pp_seeds(RankOne(g, a), 3, np.random.default_rng(0))]


# -- the scoring pass keeps the answer position's hidden state -----------------------------

def last_hidden(model, ids):
    """The decoder's final (normed) hidden state at the last position, which the output head reads."""
    with torch.inference_mode():
        out = model.get_decoder()(input_ids=torch.tensor([ids], device=model.device))
    return out.last_hidden_state[0, -1].float().cpu().numpy()


@pytest.mark.parametrize("task_name", ["sst2", "boolq"])  # boolq: through the shared-prefix cache
def test_embeddings_are_the_last_hidden_state_at_the_answer_position_and_leave_scores_alone(
        tiny_backbone, data_root, task_name):
    task = load_task(task_name)
    examples = load_examples(task, "train", data_root=str(data_root))[:7]
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    plain = score_examples(model, tok, task, examples, ScoringOptions(batch_size=3))
    embedded = score_examples(model, tok, task, examples, ScoringOptions(batch_size=3, embeddings=True))
    assert plain.embeddings is None and embedded.embeddings.shape == (7, 32)
    np.testing.assert_array_equal(plain.me, embedded.me)
    np.testing.assert_array_equal(plain.pe, embedded.pe)
    for row, ex in enumerate(examples):
        np.testing.assert_allclose(embedded.embeddings[row], last_hidden(model, encode_prompt(tok, ex.prompt)),
                                   atol=1e-4)
    np.testing.assert_allclose(embedded.label_probs.sum(axis=1), 1.0)


def test_a_generation_task_embeds_the_prompts_last_position_and_mc_passes_average(tiny_backbone, data_root):
    from star_al.models.adapters import LORA

    task = load_task("gsm8k")
    examples = load_examples(task, "test", data_root=str(data_root))[:3]
    object.__setattr__(task, "max_new_tokens", 4)
    tok, model = tiny_backbone.tokenizer, tiny_backbone.model
    scores = score_examples(model, tok, task, examples, ScoringOptions(generation_batch_size=2, embeddings=True))
    for row, ex in enumerate(examples):
        np.testing.assert_allclose(scores.embeddings[row], last_hidden(model, encode_prompt(tok, ex.prompt)),
                                   atol=1e-4)
    assert scores.label_probs is None
    sst2 = load_task("sst2")
    few = load_examples(sst2, "test", data_root=str(data_root))[:4]
    peft_model = LORA.attach(model, LoraSettings(rank=4, alpha=8, dropout=0.3), 0)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.3)
    torch.manual_seed(0)
    mc = score_examples(peft_model, tok, sst2, few, ScoringOptions(passes=3, embeddings=True))
    assert mc.embeddings.shape == (4, 32) and np.isfinite(mc.embeddings).all()
    deterministic = score_examples(peft_model, tok, sst2, few, ScoringOptions(embeddings=True))
    assert not np.allclose(mc.embeddings, deterministic.embeddings)  # the passes' dropout reaches them


# -- whole runs --------------------------------------------------------------------------------

def smoke_config(strategy, **changes):
    """test_loop's tiny run, two query rounds."""
    return loop_config(strategy, **{"n_rounds": 2, **changes})


def picks(rounds):
    return [r.selected_ids for r in rounds]


# Selections of the default recipes on this tiny model, recorded before the diversity
# strategies and the cold start were added: they must not move.
BEFORE = {"random": [[0, 31, 45, 58], [56, 32, 48], [27, 35, 15]],
          "me": [[0, 31, 45, 58], [32, 54, 30], [35, 13, 15]],
          "pe": [[0, 31, 45, 58], [32, 15, 38], [56, 30, 7]],
          "me+star": [[0, 31, 45, 58], [32, 54, 30], [35, 13, 15]],
          "pe+dynamic+mc": [[0, 31, 45, 58], [32, 15, 38], [56, 30, 7]]}


@pytest.mark.parametrize("name", list(BEFORE))
def test_the_default_recipes_select_what_they_selected_before(tiny_backbone_factory, sst2_data, tmp_path, name):
    if name != "random" and TEST_DEVICE != "cpu":
        pytest.skip("recorded with the CPU's arithmetic")
    rounds = run(smoke_config(name), tiny_backbone_factory(0), sst2_data, tmp_path / "r")
    assert picks(rounds) == BEFORE[name]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["warm_start_by"] == "random"


@pytest.mark.parametrize("strategy,warm", [("me+star+kmeans", "me+kmeans"), ("coreset", "typiclust"),
                                           ("typiclust", "coreset"),
                                           ("pe+coreset", "pe")])
def test_a_diverse_recipe_and_a_cold_start_run_end_to_end_and_repeat_exactly(tiny_backbone_factory, sst2_data,
                                                                            tmp_path, strategy, warm):
    config = smoke_config(strategy, warm_start_by=warm)
    first = run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "a")
    selected = [i for ids in picks(first) for i in ids]
    pool = set(int(i) for i in load_npz(tmp_path / "a" / "base_scores.npz")["ids"])
    assert [len(ids) for ids in picks(first)] == [4, 3, 3] and len(set(selected)) == 10 and set(selected) <= pool
    second = run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "b")
    assert picks(second) == picks(first)
    cold = load_npz(tmp_path / "a" / "scores" / "round-00.npz")
    assert sorted(int(i) for i in cold["ids"]) == sorted(pool)
    later = load_npz(tmp_path / "a" / "scores" / "round-01.npz")
    assert len(later["combined"]) == len(later["ids"]) == 30 - 4


def test_a_cold_start_by_uncertainty_takes_the_base_models_top_scores(tiny_backbone_factory, sst2_data, tmp_path):
    rounds = run(smoke_config("random", warm_start_by="me", n_rounds=0), tiny_backbone_factory(0), sst2_data,
                 tmp_path / "r")
    base = load_npz(tmp_path / "r" / "base_scores.npz")
    top = base["ids"][np.lexsort((base["ids"], -base["me"]))[:4]]
    assert rounds[0].selected_ids == [int(i) for i in top]
    assert rounds[0].selected_scores == pytest.approx(sorted(base["me"], reverse=True)[:4])


def test_a_diverse_run_resumed_after_a_kill_ends_as_an_uninterrupted_one(tiny_backbone_factory, sst2_data, tmp_path):
    from test_loop import Killed, KillingOracle, without_timings

    config = smoke_config("me+kmeans", warm_start_by="typiclust")
    whole = run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "whole")
    with pytest.raises(Killed):
        run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "killed", KillingOracle(at=1))
    resumed = run(config, tiny_backbone_factory(0), sst2_data, tmp_path / "killed")
    assert without_timings(resumed) == without_timings(whole)


def test_bad_warm_starts_and_badge_on_free_text_are_refused(tiny_backbone, data_root, tmp_path):
    for bad, needle in (("me+star", "round 0 has only the base model"), ("badge", "round 0 has only"),
                        ("nope", "unknown strategy")):
        with pytest.raises(StarError, match=needle):
            smoke_config("me", warm_start_by=bad)
    task = load_task("gsm8k")
    examples = load_examples(task, "train", data_root=str(data_root))[:20]
    config = smoke_config("badge", task="gsm8k", pool_size=None, n_rounds=1)
    with pytest.raises(StarError, match="fixed set of answers"):
        ActiveLearningRun(config, task, examples, examples[:3], tiny_backbone, RunDir(tmp_path / "r"))
