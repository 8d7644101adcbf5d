"""Figures from arrays. Each function returns a matplotlib Figure and never shows it."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # Headless machines have no display; every figure is saved to a file.

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LEGEND_ROWS = 16
"""Legend entries per column before a new column starts."""


def tsne_figure(embedding, labels_true, labels_pred, *, class_names, cluster_names, title=""):
    """Draw a t-SNE map in two panels: coloured by true class and by cluster.

    Parameters
    ----------
    embedding : ndarray of shape (n_samples, 2)
        The t-SNE coordinates.
    labels_true, labels_pred : ndarray of shape (n_samples,)
        Class and cluster ids.
    class_names : sequence of str
        Legend name of each class id.
    cluster_names : sequence of str
        Legend name of each cluster id.
    title : str, default=""
        Figure title.
    """
    fig, axes = plt.subplots(1, 2, figsize=(16, 7.5))
    panels = (
        (axes[0], labels_true, class_names, "True class"),
        (axes[1], labels_pred, cluster_names, "K-means cluster"),
    )
    for ax, labels, names, panel_title in panels:
        ids = np.unique(labels)
        cmap = plt.get_cmap("tab20" if len(ids) <= 20 else "gist_ncar", len(ids))
        for position, label in enumerate(ids):
            mask = labels == label
            ax.scatter(
                embedding[mask, 0], embedding[mask, 1], s=3, color=cmap(position),
                label=str(names[label]),
            )
        ax.set_title(panel_title)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, markerscale=3,
            ncol=math.ceil(len(ids) / LEGEND_ROWS), frameon=False,
        )
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def dimension_figure(table, *, methods, title=""):
    """Plot silhouette and ARI against latent_dim, one line per method.

    Parameters
    ----------
    table : list of dict
        Rows with ``method``, ``latent_dim``, ``silhouette`` and ``ari``
        (means), and optionally ``silhouette_std`` and ``ari_std`` drawn as
        error bars.
    methods : sequence of str
        Methods to draw, in legend order.
    title : str, default=""
        Figure title.
    """
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, label in ((axes[0], "silhouette", "Silhouette"), (axes[1], "ari", "ARI")):
        for method in methods:
            rows = sorted(
                (row for row in table if row["method"] == method), key=lambda r: r["latent_dim"]
            )
            if not rows:
                continue
            dims = [row["latent_dim"] for row in rows]
            values = [row[metric] for row in rows]
            errors = [row.get(f"{metric}_std", 0.0) or 0.0 for row in rows]
            ax.errorbar(dims, values, yerr=errors, marker="o", capsize=3, label=method)
        ax.set_xscale("log", base=2)
        all_dims = sorted({row["latent_dim"] for row in table})
        ax.set_xticks(all_dims, [str(dim) for dim in all_dims])
        ax.minorticks_off()
        ax.set_xlabel("latent_dim")
        ax.set_ylabel(label)
        ax.set_title(f"{label} against latent dimension")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _show_image(ax, image):
    """Draw one (H, W, C) image, grey when it has one channel, without axes."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])


def confusion_figure(table, *, class_names, cluster_names, title=""):
    """Draw true class against cluster as a heatmap of image counts.

    Parameters
    ----------
    table : ndarray of shape (n_classes, n_clusters)
        Image counts, columns already ordered by matched class.
    class_names : sequence of str
        Row labels.
    cluster_names : sequence of str
        Column labels.
    title : str, default=""
        Figure title.
    """
    n_rows, n_cols = table.shape
    size = max(5.0, 0.22 * max(n_rows, n_cols) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(table, cmap="viridis", aspect="auto")
    fontsize = 8 if max(n_rows, n_cols) <= 20 else 6
    ax.set_xticks(range(n_cols), [str(name) for name in cluster_names], rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n_rows), [str(name) for name in class_names], fontsize=fontsize)
    ax.set_xlabel("cluster (matched class)")
    ax.set_ylabel("true class")
    fig.colorbar(image, ax=ax, label="images")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def reconstructions_figure(originals, reconstructions, *, title=""):
    """Show images (top row) above their reconstructions (bottom row).

    Parameters
    ----------
    originals, reconstructions : ndarray of shape (n_images, height, width, channels), uint8
        The same number of images in both.
    title : str, default=""
        Figure title.
    """
    n_images = len(originals)
    fig, axes = plt.subplots(2, n_images, figsize=(n_images * 0.9, 2.2), squeeze=False)
    for column in range(n_images):
        _show_image(axes[0, column], originals[column])
        _show_image(axes[1, column], reconstructions[column])
    axes[0, 0].set_ylabel("input", fontsize=8)
    axes[1, 0].set_ylabel("output", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def gallery_figure(images, groups, *, row_titles, title=""):
    """Show one row of images per cluster.

    Parameters
    ----------
    images : ndarray of shape (n_samples, height, width, channels), uint8
        All images.
    groups : list of ndarray of int
        For each row, the indexes of the images to show.
    row_titles : sequence of str
        A title per row, drawn on its left.
    title : str, default=""
        Figure title.
    """
    n_columns = max((len(group) for group in groups), default=1)
    fig, axes = plt.subplots(
        len(groups), n_columns, figsize=(n_columns * 0.8 + 2.2, len(groups) * 0.8 + 0.6),
        squeeze=False,
    )
    for row, group in enumerate(groups):
        for column in range(n_columns):
            ax = axes[row, column]
            if column < len(group):
                _show_image(ax, images[group[column]])
            else:
                ax.axis("off")
        axes[row, 0].set_ylabel(row_titles[row], rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
