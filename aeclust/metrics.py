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
    """Compute the exact mean Euclidean silhouette one tile of the distance matrix at a time.

    Gives the same value as ``sklearn.metrics.silhouette_score(X, labels)``
    without sampling, but keeps at most ``block_bytes`` of distances
    per thread. The distance matrix is symmetric, so only the tiles on and
    above its diagonal are computed. Each tile off the diagonal adds to the
    per-cluster sums of its rows and of its columns. The rows are sorted by
    cluster, so each cluster is one contiguous run of a tile's rows and
    columns. Squared distances come from one matrix product of centred points
    extended with their squared norms (``|x|^2 + |y|^2 - 2 x.y``), and the
    sums are kept in float64.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The clustered points; float32 input is computed in float32.
    labels : ndarray of shape (n_samples,)
        Cluster of each point; 2 to n_samples - 1 distinct values.
    n_jobs : int or None, default=None
        Threads that compute tiles at once; None means one per CPU core.
    block_bytes : int, default=64 MiB
        Memory for the distances of one tile.

    Returns
    -------
    score : float
        A point alone in its cluster scores 0, as in scikit-learn.
    """
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    X = np.asarray(X)
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    _, inverse = np.unique(np.asarray(labels).reshape(-1), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    cluster_of = inverse[order]
    n_samples, n_features = X.shape
    # Each row is [x, |x|^2, 1] for the centred point x. Scaling x by -2 and swapping the last two
    # columns on one side makes a row product |x|^2 + |y|^2 - 2 x.y, the squared distance.
    augmented = np.empty((n_samples, n_features + 2), dtype=dtype)
    augmented[:, :n_features] = X[order]
    augmented[:, :n_features] -= X.mean(axis=0, dtype=np.float64).astype(dtype)
    augmented[:, n_features] = np.einsum("ij,ij->i", augmented[:, :n_features], augmented[:, :n_features])
    augmented[:, n_features + 1] = 1.0
    sizes = np.bincount(cluster_of)
    n_clusters = len(sizes)

    side = max(1, int(np.sqrt(block_bytes / np.dtype(dtype).itemsize)))
    bounds = [(start, min(start + side, n_samples)) for start in range(0, n_samples, side)]
    tiles = [(i, j) for i in range(len(bounds)) for j in range(i, len(bounds))]
    local = threading.local()
    totals = []

    def cluster_runs(start, stop):
        """Yield (cluster, first, end) for each run of one cluster in [start, stop), relative to start."""
        clusters = cluster_of[start:stop]
        firsts = np.flatnonzero(np.r_[True, clusters[1:] != clusters[:-1]])
        for first, end in zip(firsts, np.r_[firsts[1:], stop - start]):
            yield clusters[first], first, end

    def add_tile(tile):
        if not hasattr(local, "sums"):
            local.sums = np.zeros((n_samples, n_clusters), dtype=np.float64)
            totals.append(local.sums)
        sums = local.sums
        (row_start, row_stop), (col_start, col_stop) = bounds[tile[0]], bounds[tile[1]]
        left = augmented[row_start:row_stop].copy()
        left[:, :n_features] *= -2.0
        left[:, [n_features, n_features + 1]] = left[:, [n_features + 1, n_features]]
        distances = left @ augmented[col_start:col_stop].T
        # Round-off can leave a zero distance slightly below 0. Its size is the error either way,
        # and abs is cheaper than clipping.
        np.abs(distances, out=distances)
        np.sqrt(distances, out=distances)
        if tile[0] == tile[1]:
            # A point's distance to itself is 0; round-off in the product can leave a small value.
            distances[np.arange(row_stop - row_start), np.arange(row_stop - row_start)] = 0.0
        for cluster, first, end in cluster_runs(col_start, col_stop):
            sums[row_start:row_stop, cluster] += distances[:, first:end].sum(axis=1, dtype=np.float64)
        if tile[0] != tile[1]:
            for cluster, first, end in cluster_runs(row_start, row_stop):
                sums[col_start:col_stop, cluster] += distances[first:end].sum(axis=0, dtype=np.float64)

    n_jobs = n_jobs or os.cpu_count() or 1
    # Each thread multiplies its own tile, so BLAS runs one thread per tile.
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_jobs) as pool:
        list(pool.map(add_tile, tiles))
    sums = np.sum(totals, axis=0)

    index = np.arange(n_samples)
    own_size = sizes[cluster_of]
    inside = sums[index, cluster_of] / np.maximum(own_size - 1, 1)
    mean_to = sums / sizes
    mean_to[index, cluster_of] = np.inf
    nearest = mean_to.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = (nearest - inside) / np.maximum(inside, nearest)
    return float(np.where(own_size > 1, np.nan_to_num(score), 0.0).mean())


def external_scores(labels_true: np.ndarray, labels_pred: np.ndarray) -> dict[str, float]:
    """Score a clustering against the true classes: ``ari``, ``nmi`` and ``acc``."""
    return {
        "ari": float(sk_metrics.adjusted_rand_score(labels_true, labels_pred)),
        "nmi": float(sk_metrics.normalized_mutual_info_score(labels_true, labels_pred)),
        "acc": clustering_accuracy(labels_true, labels_pred),
    }
