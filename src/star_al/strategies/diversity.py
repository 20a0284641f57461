"""Diversity-aware batches: choose k candidates that are not all alike (docs/method.md 9).

Uncertainty sampling takes the k top scores, which can be k near-copies of one hard
example. These strategies read each candidate's last hidden state at the answer
position (`Needs.embeddings`, from the same scoring pass as the uncertainties) and
spread the batch over that space:

- `kmeans` (strategy): k-means into k clusters, the candidate nearest each centroid.
- `+kmeans` (component on a ranker): the same clusters, the top-scoring candidate of each.
- `coreset` (Sener & Savarese 2018): greedy k-center, each pick the candidate farthest
  from the labeled set and the picks so far; `+coreset` runs it among the
  `CORESET_SHORTLIST` x k top-scoring candidates.
- `typiclust` (Hacohen et al. 2022): k-means into |labeled| + k clusters, the most
  typical candidate of each of the largest clusters with the fewest labels.
- `badge` (Ash et al. 2020): k-means++ seeding on gradient embeddings: the loss gradient on
  the last layer's LoRA B (`Needs.gradients`, engine/gradients.py), kept as rank-one factors.

Clustering is scikit-learn's KMeans, seeded from the query's rng; k-center, typicality
and the k-means++ seeding are the small functions below.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans

from star_al.strategies.base import Needs, Query, ScoredStrategy, ScoreView, Strategy, top_k

KMEANS_INITS = 3         # k-means restarts (fixed, so a run's picks do not depend on scikit-learn's default)
CORESET_SHORTLIST = 10   # +coreset: k-center among the 10 k top-scoring candidates (Zhdanov 2019's prefilter)
TYPICAL_NEIGHBOURS = 20  # typicality's K (Hacohen et al. 2022)
TYPICLUST_MAX_CLUSTERS = 500  # the paper's cap on |labeled| + k clusters


def _check_size(ids: np.ndarray, k: int) -> None:
    if k > len(ids):
        raise ValueError(f"cannot query {k} of {len(ids)} candidates")


def kmeans(points: np.ndarray, n_clusters: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn k-means (k-means++ init, KMEANS_INITS restarts) seeded from rng: (labels [n], centres)."""
    model = KMeans(n_clusters=n_clusters, n_init=KMEANS_INITS, random_state=int(rng.integers(2 ** 31 - 1)))
    labels = model.fit_predict(np.asarray(points, dtype=np.float64))
    return labels, model.cluster_centers_


def top_per_cluster(ids: np.ndarray, scores: np.ndarray, labels: np.ndarray, k: int) -> list[int]:
    """Positions of the top-scoring candidate of each cluster (ties to the smaller id), highest first.

    When k-means leaves fewer than k clusters non-empty (duplicate points), the rest of
    the batch is the highest-scoring candidates not yet picked.
    """
    order = np.lexsort((ids, -scores))  # best first
    picked, seen = [], set()
    for position in order:
        if labels[position] not in seen:
            seen.add(labels[position])
            picked.append(int(position))
    taken = set(picked)
    rest = [int(p) for p in order if int(p) not in taken]
    return (picked + rest)[:k]


def k_center_greedy(points: np.ndarray, centres: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """Greedy k-center (Sener & Savarese 2018): k times, the point farthest from its nearest centre
    becomes a centre. Returns the positions picked and each one's distance when picked.

    With no centres (a cold start) the first pick is the point nearest the points' mean.
    """
    points = np.asarray(points, dtype=np.float64)
    nearest = nearest_distance(points, centres)
    picked, distances = [], []
    for _ in range(k):
        if np.isinf(nearest).all():
            position = int(np.argmin(np.linalg.norm(points - points.mean(axis=0), axis=1)))
        else:
            position = int(np.argmax(nearest))  # ties to the first, so picks are reproducible
        picked.append(position)
        distances.append(float(nearest[position]) if np.isfinite(nearest[position]) else 0.0)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[position], axis=1))
        nearest[picked] = -1.0  # never picked twice, even among duplicates
    return picked, distances


def typicality(points: np.ndarray, n_neighbours: int = TYPICAL_NEIGHBOURS) -> np.ndarray:
    """Hacohen et al. 2022, eq. 2: 1 / the mean Euclidean distance to the K nearest other points,
    K = min(n_neighbours, n - 1). A lone point has typicality 0."""
    points = np.asarray(points, dtype=np.float64)
    neighbours = min(n_neighbours, len(points) - 1)
    if neighbours < 1:
        return np.zeros(len(points))
    distances = np.sort(_distances(points, points), axis=1)[:, 1:neighbours + 1]  # column 0: the point itself
    return 1.0 / np.maximum(distances.mean(axis=1), 1e-12)


class RankOne:
    """Points that are outer products g_i a_i^T (gradients on a weight matrix), kept as the factors.

    ||g a^T - h b^T||^2 = |g|^2 |a|^2 + |h|^2 |b|^2 - 2 (g.h)(a.b): distances need only dot
    products, so n x hidden x rank values are never formed.
    """

    def __init__(self, left: np.ndarray, right: np.ndarray):
        self.left, self.right = np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)
        self._left_sq, self._right_sq = (self.left ** 2).sum(1), (self.right ** 2).sum(1)

    def __len__(self) -> int:
        return len(self.left)

    def norms(self) -> np.ndarray:
        return np.sqrt(self._left_sq * self._right_sq)

    def squared_distances_to(self, position: int) -> np.ndarray:
        cross = (self.left @ self.left[position]) * (self.right @ self.right[position])
        own = self._left_sq * self._right_sq
        return np.maximum(own + own[position] - 2 * cross, 0.0)

    def dense(self) -> np.ndarray:
        """[n, hidden * rank]: the products themselves (for tests and small inputs)."""
        return (self.left[:, :, None] * self.right[:, None, :]).reshape(len(self), -1)


def kmeans_pp_seeds(points, k: int, rng: np.random.Generator) -> list[int]:
    """BADGE's k-means++ seeding (Ash et al. 2020): the largest-norm point first, then each next
    point drawn with probability proportional to its squared distance to the nearest seed.

    `points` is an array [n, d] or a RankOne. When every unpicked point coincides with a
    seed (all weights 0), the next is drawn uniformly among the unpicked.
    """
    if not isinstance(points, RankOne):
        dense = np.asarray(points, dtype=np.float64)
        norms = np.linalg.norm(dense, axis=1)
        distances_to = lambda position: ((dense - dense[position]) ** 2).sum(axis=1)  # noqa: E731
    else:
        norms, distances_to = points.norms(), points.squared_distances_to
    first = int(np.argmax(norms))
    seeds = [first]
    nearest = distances_to(first)
    while len(seeds) < k:
        weights = nearest.copy()
        weights[seeds] = 0.0
        if weights.sum() > 0:
            position = int(rng.choice(len(norms), p=weights / weights.sum()))
        else:
            position = int(rng.choice(np.setdiff1d(np.arange(len(norms)), seeds)))
        seeds.append(position)
        nearest = np.minimum(nearest, distances_to(position))
    return seeds


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)]."""
    squared = (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def nearest_distance(points: np.ndarray, centres: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each point's distance to its nearest centre (inf with no centres), a chunk of rows at a time."""
    points, centres = np.asarray(points, dtype=np.float64), np.asarray(centres, dtype=np.float64)
    if len(centres) == 0:
        return np.full(len(points), np.inf)
    return np.concatenate([_distances(points[start:start + chunk], centres).min(axis=1)
                           for start in range(0, len(points), chunk)])


# -- strategies ------------------------------------------------------------------------------

class KMeansCentroids(Strategy):
    """k-means on the candidates' hidden states into k clusters; the candidate nearest each centroid.

    Its ranked score is minus the distance to the candidate's own centroid.
    """

    needs = Needs(embeddings=True)

    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        _check_size(view.ids, k)
        points = view.embeddings()
        labels, centres = kmeans(points, k, rng)
        closeness = -np.linalg.norm(points - centres[labels], axis=1)
        chosen = top_per_cluster(view.ids, closeness, labels, k)
        return Query([int(view.ids[p]) for p in chosen], [float(closeness[p]) for p in chosen], closeness,
                     {"cluster": labels})


class ClusterTopK(Strategy):
    """The `kmeans` component: k-means into k clusters, the inner ranker's best candidate of each."""

    def __init__(self, inner: ScoredStrategy):
        self.inner = inner
        self.needs = inner.needs | Needs(embeddings=True)

    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        _check_size(view.ids, k)
        scores = self.inner.score(view)
        labels, _ = kmeans(view.embeddings(), k, rng)
        chosen = top_per_cluster(view.ids, scores, labels, k)
        return Query([int(view.ids[p]) for p in chosen], [float(scores[p]) for p in chosen], scores,
                     {**self.inner.info(view), "cluster": labels})


class Coreset(Strategy):
    """Greedy k-center over the candidates from the labeled set's hidden states (Sener & Savarese 2018).

    The labeled examples are scored in the candidates' pass (cost: |labeled| more
    examples a query). Its ranked score is the distance to the nearest labeled example.
    """

    needs = Needs(embeddings=True, labeled_embeddings=True)

    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        _check_size(view.ids, k)
        points, labeled = view.embeddings(), view.labeled_embeddings()
        chosen, distances = k_center_greedy(points, labeled, k)
        coverage = nearest_distance(points, labeled) if len(labeled) else np.zeros(len(points))
        return Query([int(view.ids[p]) for p in chosen], distances, coverage)


class CoresetShortlist(Strategy):
    """The `coreset` component: greedy k-center among the inner ranker's CORESET_SHORTLIST x k best."""

    def __init__(self, inner: ScoredStrategy):
        self.inner = inner
        self.needs = inner.needs | Needs(embeddings=True, labeled_embeddings=True)

    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        _check_size(view.ids, k)
        scores = self.inner.score(view)
        shortlist_ids, _ = top_k(view.ids, scores, min(len(view.ids), CORESET_SHORTLIST * k))
        position = {int(i): n for n, i in enumerate(view.ids)}
        shortlist = np.array([position[i] for i in shortlist_ids])
        chosen, _ = k_center_greedy(view.embeddings()[shortlist], view.labeled_embeddings(), k)
        picks = shortlist[chosen]
        return Query([int(view.ids[p]) for p in picks], [float(scores[p]) for p in picks], scores,
                     self.inner.info(view))


class TypiClust(Strategy):
    """TypiClust (Hacohen et al. 2022): the most typical candidate of the largest uncovered clusters.

    The candidates and the labeled set are clustered together into min(|labeled| + k, 500)
    clusters; clusters are taken by fewest labeled members, then largest; from each, the
    unlabeled member of highest typicality (within the cluster's unlabeled members, K =
    min(20, size - 1)); round and round when there are fewer clusters than picks. Unlike
    the paper's code, which skips clusters of 5 or fewer and uses squared distances, every
    cluster counts (small pools would lose most of theirs) and typicality is the paper's
    eq. 2, with plain distances.
    """

    needs = Needs(embeddings=True, labeled_embeddings=True)

    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        _check_size(view.ids, k)
        points, labeled = view.embeddings(), view.labeled_embeddings()
        n_clusters = min(len(labeled) + k, TYPICLUST_MAX_CLUSTERS, len(points) + len(labeled))
        labels, _ = kmeans(np.concatenate([points, labeled]), n_clusters, rng)
        ranked, chosen = typiclust_picks(labels[:len(points)], labels[len(points):], points, k)
        return Query([int(view.ids[p]) for p in chosen], [float(ranked[p]) for p in chosen], ranked,
                     {"cluster": labels[:len(points)]})


def typiclust_picks(candidate_labels: np.ndarray, labeled_labels: np.ndarray, points: np.ndarray,
                    k: int) -> tuple[np.ndarray, list[int]]:
    """TypiClust's choice given the clusters: (each candidate's typicality in its cluster, positions picked)."""
    clusters = np.unique(np.concatenate([candidate_labels, labeled_labels]))
    sizes = {c: int((candidate_labels == c).sum() + (labeled_labels == c).sum()) for c in clusters}
    covered = {c: int((labeled_labels == c).sum()) for c in clusters}
    order = sorted((c for c in clusters if (candidate_labels == c).any()), key=lambda c: (covered[c], -sizes[c], c))
    typical = np.zeros(len(points))
    for c in order:
        members = np.flatnonzero(candidate_labels == c)
        typical[members] = typicality(points[members])
    available = np.ones(len(points), dtype=bool)
    chosen: list[int] = []
    while len(chosen) < k:
        for c in order:
            members = np.flatnonzero((candidate_labels == c) & available)
            if len(members) == 0 or len(chosen) == k:
                continue
            scores = typicality(points[members])  # among the members still unpicked, as the paper's code
            position = int(members[np.argmax(scores)])
            chosen.append(position)
            available[position] = False
    return typical, chosen


class Badge(Strategy):
    """BADGE (Ash et al. 2020): k-means++ seeds on gradient embeddings, here the loss gradient
    on the last layer's LoRA B at the model's own answer (engine/gradients.py).

    Its ranked score is the embedding's norm, the first seed being the largest.
    """

    needs = Needs(gradients=True)

    def select(self, view: ScoreView, k: int, rng: np.random.Generator) -> Query:
        _check_size(view.ids, k)
        gradients = RankOne(*view.gradient_factors())
        norms = gradients.norms()
        chosen = kmeans_pp_seeds(gradients, k, rng)
        return Query([int(view.ids[p]) for p in chosen], [float(norms[p]) for p in chosen], norms)
