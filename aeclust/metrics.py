"""Clustering scores on arrays: silhouette, ARI, NMI and clustering accuracy."""

from __future__ import annotations

import warnings

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn import metrics as sk_metrics



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


BLOCK_BYTES = 64 * 2**20
"""Size of the block of the distance matrix that the exact silhouette keeps in memory at a time."""


def silhouette(
    X: np.ndarray, labels_pred: np.ndarray, *, random_state: int, sample_size: int | None = None
) -> tuple[float, str]:
    """Compute the Euclidean silhouette, exact unless ``sample_size`` requests an estimate.

    The exact score comes from :func:`silhouette_exact`, which needs no
    n x n matrix, so it is the default at any size. With ``sample_size``
    smaller than the number of points, scikit-learn scores a seeded sample
    of that many points instead.

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
    mode = "sampled" if sample_size is not None and sample_size < n_samples else "exact"
    if not 2 <= n_labels <= n_samples - 1:
        warnings.warn(
            f"silhouette is undefined for {n_labels} clusters of {n_samples} points; "
            "it is recorded as NaN.",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan"), mode
    if mode == "exact":
        return silhouette_exact(X, labels_pred), mode
    score = sk_metrics.silhouette_score(
        X, labels_pred, metric="euclidean", sample_size=sample_size, random_state=random_state
    )
    return float(score), mode


def silhouette_exact(X: np.ndarray, labels: np.ndarray, *, n_jobs: int | None = None,
                     block_bytes: int = BLOCK_BYTES) -> float:
    """Compute the exact mean Euclidean silhouette one block of rows at a time.

    Gives the same value as ``sklearn.metrics.silhouette_score(X, labels)``
    without sampling, but keeps at most ``block_bytes`` of distances
    per thread. The rows are sorted by cluster, so each block's distances
    are summed per cluster with one ``np.add.reduceat``. Squared distances
    come from matrix products (``|x|^2 + |y|^2 - 2 x.y``) on centred data,
    and the sums are kept in float64.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The clustered points; float32 input is computed in float32.
    labels : ndarray of shape (n_samples,)
        Cluster of each point; 2 to n_samples - 1 distinct values.
    n_jobs : int or None, default=None
        Threads that compute blocks at once; None means one per CPU core.
    block_bytes : int, default=64 MiB
        Memory for the distances of one block.

    Returns
    -------
    score : float
        A point alone in its cluster scores 0, as in scikit-learn.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    X = np.asarray(X)
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    _, inverse = np.unique(np.asarray(labels).reshape(-1), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    cluster_of = inverse[order]
    points = np.asarray(X[order], dtype=dtype)
    points = points - points.mean(axis=0, dtype=np.float64).astype(dtype)
    sizes = np.bincount(cluster_of)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    squared_norms = np.einsum("ij,ij->i", points, points)

    n_samples = len(points)
    rows = max(1, int(block_bytes // (n_samples * np.dtype(dtype).itemsize)))
    blocks = [(start, min(start + rows, n_samples)) for start in range(0, n_samples, rows)]
    scores = np.empty(n_samples, dtype=np.float64)

    def score_block(block):
        start, stop = block
        distances = points[start:stop] @ points.T
        distances *= -2.0
        distances += squared_norms[start:stop, np.newaxis]
        distances += squared_norms[np.newaxis, :]
        np.maximum(distances, 0.0, out=distances)
        np.sqrt(distances, out=distances)
        # A point's distance to itself is 0; round-off in the product can leave a small value.
        distances[np.arange(stop - start), np.arange(start, stop)] = 0.0
        sums = np.add.reduceat(distances, starts, axis=1, dtype=np.float64)
        own = cluster_of[start:stop]
        own_size = sizes[own]
        index = np.arange(stop - start)
        inside = sums[index, own] / np.maximum(own_size - 1, 1)
        mean_to = sums / sizes
        mean_to[index, own] = np.inf
        nearest = mean_to.min(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            score = (nearest - inside) / np.maximum(inside, nearest)
        scores[start:stop] = np.where(own_size > 1, np.nan_to_num(score), 0.0)

    n_jobs = n_jobs or os.cpu_count() or 1
    # Each thread multiplies its own block, so BLAS runs one thread per block.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_jobs) as pool:
        list(pool.map(score_block, blocks))
    return float(scores.mean())


def external_scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> dict[str, float]:
    """Score a clustering against the true classes: ``ari``, ``nmi`` and ``acc``."""
    return {
        "ari": float(sk_metrics.adjusted_rand_score(labels_true, labels_pred)),
        "nmi": float(sk_metrics.normalized_mutual_info_score(labels_true, labels_pred)),
        "acc": clustering_accuracy(labels_true, labels_pred),
    }
