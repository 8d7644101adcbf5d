"""Clustering scores on arrays: silhouette, ARI, NMI and clustering accuracy."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as sk_metrics

from aeclust.config import SILHOUETTE_MAX_EXACT


def contingency(labels_true: np.ndarray, labels_pred: np.ndarray) -> np.ndarray:
    """Count images per (true class, cluster), shape (n_classes, n_clusters).

    Class and cluster ids are used as row and column indexes, so the table
    has ``max(id) + 1`` rows and columns.
    """
    n_rows = int(labels_true.max()) + 1
    n_cols = int(labels_pred.max()) + 1
    table = np.zeros((n_rows, n_cols), dtype=np.int64)
    np.add.at(table, (labels_true, labels_pred), 1)
    return table


def clustering_accuracy(labels_true: np.ndarray, labels_pred: np.ndarray) -> float:
    """Score the share of images whose cluster maps to their class.

    Clusters are matched one-to-one to classes by the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``) so that the matched counts are
    largest. Clusters left without a class count as wrong.

    Examples
    --------
    >>> import numpy as np
    >>> clustering_accuracy(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
    1.0
    """
    labels_true = np.asarray(labels_true).reshape(-1)
    labels_pred = np.asarray(labels_pred).reshape(-1)
    table = contingency(labels_true, labels_pred)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / len(labels_true))


def silhouette(X: np.ndarray, labels_pred: np.ndarray, *, random_state: int) -> tuple[float, str]:
    """Compute the Euclidean silhouette, exact up to 10,000 points.

    Above ``SILHOUETTE_MAX_EXACT`` points the score is computed on a seeded
    sample of that many points, because the exact score costs n^2 distances.

    Returns
    -------
    score : float
        The silhouette, or NaN when it is undefined (fewer than 2 clusters or
        one cluster per point).
    mode : {"exact", "sampled"}
        Which computation gave the score.
    """
    n_samples = len(X)
    n_labels = len(np.unique(labels_pred))
    mode = "exact" if n_samples <= SILHOUETTE_MAX_EXACT else "sampled"
    if not 2 <= n_labels <= n_samples - 1:
        warnings.warn(
            f"silhouette is undefined for {n_labels} clusters of {n_samples} points; "
            "it is recorded as NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan"), mode
    sample_size = None if mode == "exact" else SILHOUETTE_MAX_EXACT
    score = sk_metrics.silhouette_score(
        X, labels_pred, metric="euclidean", sample_size=sample_size, random_state=random_state
    )
    return float(score), mode


def external_scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> dict[str, float]:
    """Score a clustering against the true classes: ``ari``, ``nmi`` and ``acc``."""
    return {
        "ari": float(sk_metrics.adjusted_rand_score(labels_true, labels_pred)),
        "nmi": float(sk_metrics.normalized_mutual_info_score(labels_true, labels_pred)),
        "acc": clustering_accuracy(labels_true, labels_pred),
    }
