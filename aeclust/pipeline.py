"""One run of the study end to end: features, clusters, scores, figures and tracking."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np

from aeclust import cluster, data, metrics, models, plots, tracking
from aeclust.config import ConfigError, RunConfig

logger = logging.getLogger(__name__)

CONFUSION_COLUMNS = ["true_class", "confused_with", "count", "class_size", "share"]


@dataclass(frozen=True)
class RunResult:
    """What one finished run recorded.

    Attributes
    ----------
    run_id : str
        The MLflow run.
    config : RunConfig
        The configuration that ran.
    metrics : dict of str to float
        The scalar metrics logged.
    """

    run_id: str
    config: RunConfig
    metrics: dict


def load_data(config: RunConfig) -> tuple[RunConfig, data.ImageSet]:
    """Load the split that ``config`` names, with an unset sample size resolved.

    Returns
    -------
    config : RunConfig
        ``config`` with ``data.sample_size`` set to the number of images used
        (0 for all).
    image_set : ImageSet
        The whole split.
    """
    image_set = data.load_dataset(config.data)
    sample_size = data.resolve_sample_size(config.data.sample_size, len(image_set))
    resolved = dataclasses.replace(config.data, sample_size=sample_size)
    return dataclasses.replace(config, data=resolved), image_set


def draw_sample(config: RunConfig, image_set: data.ImageSet) -> data.ImageSet:
    """Draw the sample of ``config.seed`` from the whole split."""
    return data.draw_sample(
        image_set, sample_size=config.data.sample_size, random_state=config.seed
    )


def check_fits(config: RunConfig, image_set: data.ImageSet) -> None:
    """Raise :class:`ConfigError` when ``config`` cannot run on ``image_set``.

    Checked before any run is created, so bad input leaves nothing in the store.
    """
    n_features = int(np.prod(image_set.images.shape[1:]))
    models.check_latent_dim_fits(
        config.method, config.latent_dim, n_samples=len(image_set), n_features=n_features
    )
    n_clusters = config.n_clusters or image_set.n_classes
    if n_clusters > len(image_set):
        raise ConfigError(
            f"n_clusters={n_clusters} is larger than the {len(image_set)} sampled images: "
            "use a larger --sample-size or a smaller --n-clusters."
        )


def run_name(config: RunConfig) -> str:
    """Name a run after its method, latent dimension and seed, e.g. ``ae-d32-s42``."""
    return f"{config.method}-d{config.latent_dim}-s{config.seed}"


def execute_run(
    config: RunConfig,
    image_set: data.ImageSet,
    *,
    experiment_id: str,
    parent_run_id: str | None = None,
) -> RunResult:
    """Run one configuration on an already sampled image set and track it.

    Parameters
    ----------
    config : RunConfig
        What to run.
    image_set : ImageSet
        The sample drawn with ``config.seed``.
    experiment_id : str
        MLflow experiment of the run.
    parent_run_id : str or None, default=None
        The sweep run this run is nested under.
    """
    check_fits(config, image_set)
    tags = {
        tracking.TAG_ROLE: tracking.ROLE_RUN,
        tracking.TAG_CONFIG_HASH: config.config_hash(),
        tracking.TAG_DATASET: image_set.name,
    }
    if parent_run_id is not None:
        tags[tracking.TAG_SWEEP_RUN_ID] = parent_run_id

    with tracking.active_run(
        experiment_id, run_name=run_name(config), tags=tags, parent_run_id=parent_run_id
    ) as run_id:
        logger.info("Run %s (%s) started.", run_name(config), run_id)
        scores = _fit_and_score(config, image_set)
    logger.info(
        "Run %s finished: ari=%.4f silhouette=%.4f.",
        run_name(config), scores[tracking.METRIC_ARI], scores[tracking.METRIC_SILHOUETTE],
    )
    return RunResult(run_id=run_id, config=config, metrics=scores)


def _fit_and_score(config: RunConfig, image_set: data.ImageSet) -> dict:
    X = data.to_features(image_set.images)
    n_clusters = config.n_clusters or image_set.n_classes
    silhouette_mode = "exact" if len(X) <= metrics.SILHOUETTE_MAX_EXACT else "sampled"
    params = config.params()
    params["n_clusters"] = n_clusters
    params[tracking.PARAM_N_CLASSES] = image_set.n_classes
    params[tracking.PARAM_SILHOUETTE_MODE] = silhouette_mode
    tracking.log_params(params)

    if config.method == "ae":
        fitted = models.fit_autoencoder(
            X,
            latent_dim=config.latent_dim,
            epochs=config.epochs,
            batch_size=config.batch_size,
            random_state=config.seed,
        )
        tracking.log_history(fitted.history)
    else:
        fitted = models.fit_pca(X, latent_dim=config.latent_dim, random_state=config.seed)

    start = time.perf_counter()
    labels_pred = cluster.kmeans(
        fitted.features, n_clusters=n_clusters, n_init=config.n_init, random_state=config.seed
    )
    silhouette, _ = metrics.silhouette(fitted.features, labels_pred, random_state=config.seed)
    scores = metrics.external_scores(image_set.labels, labels_pred)
    scores[tracking.METRIC_SILHOUETTE] = silhouette
    scores[tracking.METRIC_FIT_SECONDS] = fitted.fit_seconds
    scores[tracking.METRIC_N_SAMPLES] = len(X)
    if fitted.reconstruction_mse is not None:
        scores[tracking.METRIC_RECONSTRUCTION_MSE] = fitted.reconstruction_mse
    tracking.log_metrics(scores)
    logger.debug("Clustering and scoring took %.1f s.", time.perf_counter() - start)

    pairs = cluster.confusion_pairs(image_set.labels, labels_pred, image_set.class_names)
    tracking.log_csv(pairs, tracking.ARTIFACT_CONFUSION_PAIRS, fieldnames=CONFUSION_COLUMNS)

    if config.tsne:
        _log_tsne(config, image_set, fitted.features, labels_pred)

    if config.method == "ae":
        tracking.log_encoder(fitted.model, X)
    else:
        tracking.log_pca(fitted.model, X)
    return scores


def _log_tsne(config, image_set, features, labels_pred) -> None:
    from aeclust import embed

    start = time.perf_counter()
    embedding = embed.tsne_2d(features, random_state=config.seed)
    majority = cluster.majority_classes(image_set.labels, labels_pred)
    cluster_names = [
        f"{cluster_id}: {image_set.class_names[majority[cluster_id]]}"
        for cluster_id in range(int(labels_pred.max()) + 1)
    ]
    fig = plots.tsne_figure(
        embedding,
        image_set.labels,
        labels_pred,
        class_names=image_set.class_names,
        cluster_names=cluster_names,
        title=f"{image_set.name}: {run_name(config)}",
    )
    tracking.log_figure(fig, tracking.ARTIFACT_TSNE)
    logger.debug("t-SNE took %.1f s.", time.perf_counter() - start)
