"""K-means on features, and which classes end up in the same cluster."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans

from aeclust.metrics import contingency


def kmeans(X: np.ndarray, *, n_clusters: int, n_init: int, random_state: int) -> np.ndarray:
    """Cluster the rows of ``X`` with K-means and return the cluster ids.

    Raises
    ------
    ValueError
        If there are fewer rows than clusters.
    """
    if len(X) < n_clusters:
        raise ValueError(
            f"n_clusters={n_clusters} is larger than the {len(X)} samples: "
            "use a larger --sample-size or a smaller --n-clusters."
        )
    model = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=random_state)
    labels_pred = model.fit_predict(X)
    n_found = len(np.unique(labels_pred))
    if n_found < n_clusters:
        warnings.warn(
            f"K-means found {n_found} distinct clusters of the {n_clusters} requested; "
            "the features may have many duplicate rows.",
            RuntimeWarning,
            stacklevel=2,
        )
    return labels_pred


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
