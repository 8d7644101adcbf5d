"""Two-dimensional t-SNE maps of features, through openTSNE."""

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
