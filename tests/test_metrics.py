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


def test_silhouette_samples_large_sets(monkeypatch):
    monkeypatch.setattr(metrics, "SILHOUETTE_MAX_EXACT", 50)
    from sklearn.metrics import silhouette_score

    X, labels = make_blobs(n_samples=200, centers=3, random_state=0)
    score, mode = metrics.silhouette(X, labels, random_state=0)
    assert mode == "sampled"
    assert score == pytest.approx(silhouette_score(X, labels), abs=0.1)
    assert score != silhouette_score(X, labels)


def test_kmeans_finds_blobs_and_is_seeded():
    X, labels_true = make_blobs(n_samples=60, centers=3, cluster_std=0.5, random_state=1)
    first = cluster.kmeans(X, n_clusters=3, n_init=10, random_state=3)
    second = cluster.kmeans(X, n_clusters=3, n_init=10, random_state=3)
    assert np.array_equal(first, second)
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
