"""K-means and Gaussian mixtures on features, and which classes end up in the same cluster."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from aeclust.config import ConfigError

from aeclust.metrics import contingency

logger = logging.getLogger(__name__)


CLUSTERER_LABELS = {"kmeans": "K-means", "gmm": "Gaussian mixture"}

ELKAN_MIN_FEATURES = 64
"""K-means uses Elkan's algorithm from this many features on, and Lloyd's below."""


def fit_clusters(X: np.ndarray, *, clusterer: str, n_clusters: int, n_init: int, random_state: int):
    """Cluster the rows of ``X`` with ``clusterer`` (``kmeans`` or ``gmm``).

    Returns
    -------
    labels_pred : ndarray of shape (n_samples,)
        Cluster id of each row.
    centers : ndarray of shape (n_clusters, n_features)
        The centroids, or the component means of the mixture.
    model : sklearn.cluster.KMeans or sklearn.mixture.GaussianMixture
        The fitted model, whose ``predict`` assigns new rows.

    Raises
    ------
    ConfigError
        If there are fewer rows, or fewer distinct rows, than clusters.
    """
    _check_enough_rows(X, n_clusters)
    if clusterer == "kmeans":
        # Elkan's variant took 0.5x Lloyd's time at 256 features but 1.5x at 16 (docs/benchmarks.md).
        # Float round-off can still lead one of its starts to another local optimum than Lloyd's.
        algorithm = "elkan" if X.shape[1] >= ELKAN_MIN_FEATURES else "lloyd"
        model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state, algorithm=algorithm)
        labels_pred = model.fit_predict(X)
        centers = model.cluster_centers_
    elif clusterer == "gmm":
        model = GaussianMixture(
            n_components=n_clusters, covariance_type="full", n_init=n_init, random_state=random_state
        )
        labels_pred = model.fit(X).predict(X)
        if not model.converged_:
            logger.warning(
                "The Gaussian mixture did not converge in %d iterations; its labels are still used.",
                model.max_iter,
            )
        centers = model.means_
    else:
        raise ConfigError(f"clusterer={clusterer!r} is not supported: use kmeans or gmm.")
    n_found = len(np.unique(labels_pred))
    if n_found < n_clusters:
        warnings.warn(
            f"{CLUSTERER_LABELS[clusterer]} found {n_found} distinct clusters of the {n_clusters} "
            "requested; the features may have many duplicate rows.",
            RuntimeWarning,
            stacklevel=2,
        )
    return labels_pred, np.asarray(centers), model


def kmeans(X: np.ndarray, *, n_clusters: int, n_init: int, random_state: int):
    """Cluster the rows of ``X`` with K-means; return the labels and the centroids.

    See :func:`fit_clusters`.
    """
    labels_pred, centers, _ = fit_clusters(
        X, clusterer="kmeans", n_clusters=n_clusters, n_init=n_init, random_state=random_state
    )
    return labels_pred, centers


def _check_enough_rows(X: np.ndarray, n_clusters: int) -> None:
    if len(X) < n_clusters:
        raise ConfigError(
            f"n_clusters={n_clusters} is larger than the {len(X)} samples: "
            "use a larger --sample-size or a smaller --n-clusters."
        )
    # Rows equal up to float round-off (1e-6 of the largest value) count as one.
    scale = float(np.max(np.abs(X))) or 1.0
    n_distinct = len(np.unique(np.round(X / scale, 6), axis=0))
    if n_distinct < n_clusters:
        raise ConfigError(
            f"n_clusters={n_clusters} is larger than the {n_distinct} distinct feature vectors, so "
            "the clusterer would return duplicate centres: use a smaller --n-clusters or more "
            "varied images."
        )


def majority_classes(labels_true: np.ndarray, labels_pred: np.ndarray) -> np.ndarray:
    """Return, for each cluster id, the class most of its images belong to."""
    return contingency(labels_true, labels_pred).argmax(axis=0)


def confusion_pairs(
    labels_true: np.ndarray, labels_pred: np.ndarray, class_names
) -> list[dict]:
    """List, for each true class, the other class its images are most often clustered as.

    Each cluster stands for its majority class. An image of class ``c`` is
    "clustered as" class ``d`` when its cluster's majority class is ``d``.

    Returns
    -------
    rows : list of dict
        One row per class present in ``labels_true``, sorted by falling
        ``share``, with the keys ``true_class``, ``confused_with``, ``count``,
        ``class_size`` and ``share`` (``count / class_size``). ``confused_with``
        is empty and ``count`` is 0 when every image of the class lands in
        clusters of its own class.
    """
    predicted_class = majority_classes(labels_true, labels_pred)[labels_pred]
    n_classes = len(class_names)
    table = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(table, (labels_true, predicted_class), 1)
    np.fill_diagonal(table, 0)

    rows = []
    for true_class in np.unique(labels_true):
        class_size = int(np.sum(labels_true == true_class))
        other = int(table[true_class].argmax())
        count = int(table[true_class, other])
        rows.append(
            {
                "true_class": class_names[true_class],
                "confused_with": class_names[other] if count else "",
                "count": count,
                "class_size": class_size,
                "share": count / class_size,
            }
        )
    rows.sort(key=lambda row: (-row["share"], row["true_class"]))
    return rows


def matched_confusion(labels_true: np.ndarray, labels_pred: np.ndarray, n_classes: int):
    """Count images per (true class, cluster), with clusters ordered by their matched class.

    Clusters are matched one-to-one to classes by the Hungarian algorithm, so
    that the diagonal contains the largest total. Unmatched clusters (when there
    are more clusters than classes) come last.

    Returns
    -------
    table : ndarray of shape (n_classes, n_clusters)
        Column ``j`` is the cluster matched to class ``j`` when ``j < n_classes``.
    cluster_order : ndarray of shape (n_clusters,)
        The original cluster id of each column.
    """
    from scipy.optimize import linear_sum_assignment

    n_clusters = int(labels_pred.max()) + 1
    table = np.zeros((n_classes, n_clusters), dtype=np.int64)
    np.add.at(table, (labels_true, labels_pred), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    matched = dict(zip(rows, cols))
    order = [matched[row] for row in range(n_classes) if row in matched]
    order += [col for col in range(n_clusters) if col not in set(order)]
    return table[:, order], np.asarray(order)


def shared_cluster_pairs(
    labels_true: np.ndarray, labels_pred: np.ndarray, class_names, top: int = 15
) -> list[dict]:
    """Rank unordered class pairs by how often their images share a cluster.

    For classes ``a`` and ``b``, ``count`` is the number of image pairs, one of
    each class, that fall in the same cluster: the sum over clusters of
    ``n_a(k) * n_b(k)``. ``rate`` divides it by ``n_a * n_b``, the number of
    such pairs, so it is 1 when both classes share one cluster entirely.

    Returns
    -------
    rows : list of dict
        The ``top`` pairs by falling ``rate``, with the keys ``class_a``,
        ``class_b``, ``count``, ``total`` and ``rate``.
    """
    n_classes = len(class_names)
    n_clusters = int(labels_pred.max()) + 1
    table = np.zeros((n_classes, n_clusters), dtype=np.float64)
    np.add.at(table, (labels_true, labels_pred), 1)
    shared = table @ table.T
    sizes = table.sum(axis=1)

    rows = []
    for a in range(n_classes):
        for b in range(a + 1, n_classes):
            total = sizes[a] * sizes[b]
            if total == 0:
                continue
            rows.append(
                {
                    "class_a": class_names[a],
                    "class_b": class_names[b],
                    "count": int(shared[a, b]),
                    "total": int(total),
                    "rate": float(shared[a, b] / total),
                }
            )
    rows.sort(key=lambda row: (-row["rate"], -row["count"], row["class_a"], row["class_b"]))
    return rows[:top]


def nearest_to_centers(X: np.ndarray, labels_pred: np.ndarray, centers: np.ndarray, n: int = 8):
    """Return, for each cluster, the indexes of its ``n`` members nearest its centroid."""
    nearest = []
    for cluster_id, center in enumerate(centers):
        members = np.flatnonzero(labels_pred == cluster_id)
        distances = np.sum((X[members] - center) ** 2, axis=1)
        nearest.append(members[np.argsort(distances, kind="stable")[:n]])
    return nearest
