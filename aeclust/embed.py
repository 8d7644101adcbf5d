"""Embeddings of features: 2-D t-SNE maps (openTSNE) and the UMAP step before clustering."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_PERPLEXITY = 30.0


def tsne_2d(X: np.ndarray, *, random_state: int, n_jobs: int = -1) -> np.ndarray:
    """Embed the rows of ``X`` in two dimensions with openTSNE.

    Perplexity is 30, lowered to ``(n_samples - 1) / 3`` when there are too
    few points for it.

    Returns
    -------
    embedding : ndarray of shape (n_samples, 2)
    """
    from openTSNE import TSNE

    perplexity = min(DEFAULT_PERPLEXITY, max(1.0, (len(X) - 1) / 3))
    if perplexity < DEFAULT_PERPLEXITY:
        logger.info("t-SNE perplexity lowered to %.1f for %d points.", perplexity, len(X))
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        random_state=random_state,
        n_jobs=n_jobs,
        verbose=False,
    )
    return np.asarray(tsne.fit(np.asarray(X, dtype=np.float64)))


def umap_embed(X: np.ndarray, *, n_components: int, n_neighbors: int, random_state: int):
    """Fit UMAP on the rows of ``X`` for clustering, as N2D does, and return the model and embedding.

    ``min_dist`` is 0, so points of one cluster may pack tightly. With a
    seed, umap-learn runs single-threaded and gives the same embedding each time.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Features to embed.
    n_components : int
        Output dimensions, usually the number of clusters.
    n_neighbors : int
        Size of the neighbourhood UMAP keeps; lowered to ``n_samples - 1``
        when there are fewer points.
    random_state : int
        Seeds the embedding.

    Returns
    -------
    model : umap.UMAP
        The fitted model; its ``transform`` maps new rows into the embedding.
    embedding : ndarray of shape (n_samples, n_components), dtype float32
    """
    import warnings

    from umap import UMAP

    n_neighbors = min(n_neighbors, len(X) - 1)
    # n_components must stay below the number of points for UMAP's spectral start.
    n_components = min(n_components, len(X) - 2)
    model = UMAP(
        n_components=n_components,
        n_neighbors=n_neighbors,
        min_dist=0.0,
        random_state=random_state,
    )
    with warnings.catch_warnings():
        # umap-learn warns that a seed turns off its parallel mode; aeclust wants the seed.
        warnings.filterwarnings("ignore", message=".*n_jobs.*overridden.*")
        embedding = model.fit_transform(np.asarray(X, dtype=np.float32))
    return model, np.asarray(embedding, dtype=np.float32)
