"""Figures from arrays. Each function returns a matplotlib Figure and never shows it."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # Headless machines have no display; every figure is saved to a file.

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LEGEND_ROWS = 16
"""Legend entries per column before a new column starts."""


def render_png(fig, *, dpi: float | None = None) -> bytes:
    """Render a figure as PNG bytes and close it."""
    import io

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


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


def _mosaic(images, grid, *, gap=2):
    """Tile images into one picture, one grid row per row, with a white gap between cells.

    Parameters
    ----------
    images : ndarray of shape (n_images, height, width, channels), uint8
        The images the grid refers to.
    grid : list of sequence of int
        For each row, the indexes of its images; a row may be shorter than
        the longest, and the cells after its end stay white.
    gap : int, default=2
        Pixels between cells.

    Returns
    -------
    mosaic : ndarray of shape (rows * (height + gap), columns * (width + gap), channels)
    cell : tuple of int
        The height and width of one cell, gap included.
    """
    height, width, channels = images.shape[1:]
    n_columns = max((len(row) for row in grid), default=1)
    cell = (height + gap, width + gap)
    mosaic = np.full((len(grid) * cell[0], n_columns * cell[1], channels), 255, dtype=np.uint8)
    for row, indexes in enumerate(grid):
        for column, index in enumerate(indexes):
            top, left = row * cell[0], column * cell[1]
            mosaic[top:top + height, left:left + width] = images[index]
    return mosaic, cell


def _show_mosaic(ax, mosaic, cell, *, row_titles):
    """Draw a mosaic from :func:`_mosaic` in one image, with a title left of each row."""
    if mosaic.shape[-1] == 1:
        ax.imshow(mosaic[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([(row + 0.5) * cell[0] for row in range(len(row_titles))], row_titles, fontsize=7)
    ax.tick_params(axis="y", length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)


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
    both = np.concatenate([originals, reconstructions])
    mosaic, cell = _mosaic(both, [range(n_images), range(n_images, 2 * n_images)])
    fig, ax = plt.subplots(figsize=(n_images * 0.9 + 0.8, 2.2))
    _show_mosaic(ax, mosaic, cell, row_titles=["input", "output"])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def gallery_figure(images, groups, *, row_titles, title=""):
    """Show one row of images per cluster.

    All images are tiled into one picture, so a gallery of 47 clusters
    draws as fast as one of 10.

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
    mosaic, cell = _mosaic(images, groups)
    fig, ax = plt.subplots(figsize=(n_columns * 0.8 + 2.2, len(groups) * 0.8 + 0.6))
    _show_mosaic(ax, mosaic, cell, row_titles=row_titles)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
