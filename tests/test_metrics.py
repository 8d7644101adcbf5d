"""Scores and clustering helpers on hand-made labels."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from aeclust import cluster, metrics


def test_acc_permuted_labels_is_one():
    labels_true = np.array([0, 0, 1, 1, 2, 2])
    labels_pred = np.array([2, 2, 0, 0, 1, 1])
    assert metrics.clustering_accuracy(labels_true, labels_pred) == 1.0


def test_acc_hand_computed():
    # Best matching: cluster 0 -> class 0 (2 right), cluster 1 -> class 1 (3 right): 5 of 6.
    labels_true = np.array([0, 0, 0, 1, 1, 1])
    labels_pred = np.array([0, 0, 1, 1, 1, 1])
    assert metrics.clustering_accuracy(labels_true, labels_pred) == pytest.approx(5 / 6)


def test_acc_more_clusters_than_classes():
    # Three clusters, two classes: the unmatched cluster counts as wrong.
    labels_true = np.array([0, 0, 1, 1])
    labels_pred = np.array([0, 1, 2, 2])
    assert metrics.clustering_accuracy(labels_true, labels_pred) == pytest.approx(3 / 4)


def test_external_scores_perfect():
    scores = metrics.external_scores(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
    assert scores["ari"] == pytest.approx(1.0)
    assert scores["nmi"] == pytest.approx(1.0)
    assert scores["acc"] == 1.0


def test_silhouette_hand_case():
    # Two points per cluster at distance 1 inside, 10 between clusters: a=1, b=10 (or 11).
    X = np.array([[0.0], [1.0], [11.0], [12.0]])
    score, mode = metrics.silhouette(X, np.array([0, 0, 1, 1]), random_state=0)
    expected = np.mean([1 - 1 / 11.5, 1 - 1 / 10.5, 1 - 1 / 10.5, 1 - 1 / 11.5])
    assert score == pytest.approx(expected)
    assert mode == "exact"


def test_silhouette_one_cluster_is_nan():
    with pytest.warns(RuntimeWarning, match="undefined for 1 clusters"):
        score, _ = metrics.silhouette(np.zeros((5, 2)), np.zeros(5, dtype=int), random_state=0)
    assert np.isnan(score)


def test_silhouette_samples_on_request():
    from sklearn.metrics import silhouette_score

    X, labels = make_blobs(n_samples=200, centers=3, random_state=0)
    score, mode = metrics.silhouette(X, labels, random_state=0, sample_size=50)
    assert mode == "sampled"
    assert score == pytest.approx(silhouette_score(X, labels), abs=0.1)
    assert score != silhouette_score(X, labels)


def test_kmeans_finds_blobs_and_is_seeded():
    X, labels_true = make_blobs(n_samples=60, centers=3, cluster_std=0.5, random_state=1)
    first, centers = cluster.kmeans(X, n_clusters=3, n_init=10, random_state=3)
    second, _ = cluster.kmeans(X, n_clusters=3, n_init=10, random_state=3)
    assert np.array_equal(first, second)
    assert centers.shape == (3, 2)
    assert metrics.external_scores(labels_true, first)["ari"] == pytest.approx(1.0)


def test_kmeans_too_few_samples_rejected():
    with pytest.raises(ValueError, match="n_clusters=5 is larger than the 3 samples"):
        cluster.kmeans(np.zeros((3, 2)), n_clusters=5, n_init=1, random_state=0)


def test_confusion_pairs_hand_case():
    # Cluster 0 contains three "a" and two "b", so its majority is "a". Cluster 1 contains three "b".
    labels_true = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    labels_pred = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    rows = cluster.confusion_pairs(labels_true, labels_pred, ("a", "b"))
    by_class = {row["true_class"]: row for row in rows}
    assert by_class["b"]["confused_with"] == "a"
    assert by_class["b"]["count"] == 2
    assert by_class["b"]["share"] == pytest.approx(2 / 5)
    assert by_class["a"]["confused_with"] == ""
    assert by_class["a"]["count"] == 0
    assert rows[0]["true_class"] == "b"


def test_shared_pairs_ranked_by_rate():
    # Cluster 0: a, a, b. Cluster 1: b, c, c. Cluster 2: c.
    labels_true = np.array([0, 0, 1, 1, 2, 2, 2])
    labels_pred = np.array([0, 0, 0, 1, 1, 1, 2])
    rows = cluster.shared_cluster_pairs(labels_true, labels_pred, ("a", "b", "c"))
    by_pair = {(row["class_a"], row["class_b"]): row for row in rows}
    # a-b: 2 a and 1 b in cluster 0 share it: 2 of 2 * 2 = 4 image pairs.
    assert by_pair[("a", "b")]["count"] == 2
    assert by_pair[("a", "b")]["total"] == 4
    assert by_pair[("a", "b")]["rate"] == pytest.approx(0.5)
    # b-c: 1 b and 2 c in cluster 1: 2 of 2 * 3 = 6.
    assert by_pair[("b", "c")]["rate"] == pytest.approx(2 / 6)
    assert by_pair[("a", "c")]["count"] == 0
    assert [(row["class_a"], row["class_b"]) for row in rows] == [("a", "b"), ("b", "c"), ("a", "c")]


def test_shared_pairs_keep_top():
    labels = np.arange(20) % 10
    rows = cluster.shared_cluster_pairs(labels, np.zeros(20, dtype=int), tuple("abcdefghij"), top=15)
    assert len(rows) == 15
    assert all(row["rate"] == 1.0 for row in rows)


def test_matched_confusion_orders_clusters():
    # Cluster 2 is mostly class 0, cluster 0 mostly class 1, cluster 1 mostly class 2.
    labels_true = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    labels_pred = np.array([2, 2, 0, 0, 0, 1, 1, 1, 2])
    table, order = cluster.matched_confusion(labels_true, labels_pred, 3)
    assert order.tolist() == [2, 0, 1]
    assert np.diag(table).tolist() == [2, 2, 2]
    assert table.sum() == 9


def test_matched_confusion_extra_clusters_last():
    labels_true = np.array([0, 0, 1, 1])
    labels_pred = np.array([1, 2, 0, 0])
    table, order = cluster.matched_confusion(labels_true, labels_pred, 2)
    assert order[:2].tolist() == [1, 0]
    assert order[2] == 2
    assert table.shape == (2, 3)


def test_nearest_to_centers():
    X = np.array([[0.0], [1.0], [5.0], [10.0], [11.0]])
    labels_pred = np.array([0, 0, 0, 1, 1])
    centers = np.array([[0.9], [10.0]])
    groups = cluster.nearest_to_centers(X, labels_pred, centers, n=2)
    assert groups[0].tolist() == [1, 0]
    assert groups[1].tolist() == [3, 4]


def test_tsne_perplexity_clamped_on_20_points(caplog):
    from aeclust import embed

    X, _ = make_blobs(n_samples=20, centers=2, random_state=0)
    with caplog.at_level("INFO", logger="aeclust.embed"):
        embedding = embed.tsne_2d(X, random_state=0, n_jobs=1)
    assert embedding.shape == (20, 2)
    assert "perplexity lowered to 6.3 for 20 points" in caplog.text


@pytest.mark.parametrize(
    ("n_samples", "n_features", "n_clusters", "dtype", "block_bytes"),
    [
        (500, 2, 3, np.float64, 64 * 2**20),
        (700, 16, 12, np.float32, 8_000),  # Blocks of a few rows, so the boundaries are crossed.
        (1500, 64, 47, np.float32, 64 * 2**20),
        (120, 5, 2, np.float64, 1),  # One row per block.
    ],
)
def test_blocked_silhouette_matches_sklearn(n_samples, n_features, n_clusters, dtype, block_bytes):
    from sklearn.metrics import silhouette_score

    X, labels = make_blobs(n_samples=n_samples, n_features=n_features, centers=n_clusters,
                           cluster_std=2.5, random_state=n_clusters)
    X = (X * 10 + 50).astype(dtype)  # Far from the origin, where the product trick loses digits.
    labels = labels * 7 + 3  # Ids need not be 0..k-1.
    score = metrics.silhouette_exact(X, labels, block_bytes=block_bytes)
    assert score == pytest.approx(silhouette_score(X, labels), abs=1e-5)


def test_blocked_silhouette_singletons():
    from sklearn.metrics import silhouette_score

    X = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [5.0, 5.0], [9.0, 9.0]])
    labels = np.array([0, 0, 0, 1, 1, 2])  # Cluster 2 has one point, which scores 0.
    assert metrics.silhouette_exact(X, labels) == pytest.approx(silhouette_score(X, labels), abs=1e-12)


def test_silhouette_exact_by_default():
    X, labels = make_blobs(n_samples=12_000, n_features=3, centers=4, random_state=0)
    score, mode = metrics.silhouette(X, labels, random_state=0)
    assert mode == "exact"
    from sklearn.metrics import silhouette_score

    assert score == pytest.approx(silhouette_score(X, labels), abs=1e-5)
