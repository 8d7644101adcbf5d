"""One run of the study end to end: features, clusters, scores, figures and tracking."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np

from aeclust import cluster, data, metrics, models, plots, progress, tracking
from aeclust.config import AUTOENCODERS, ConfigError, RunConfig

logger = logging.getLogger(__name__)

CONFUSION_COLUMNS = ["scope", "class_a", "class_b", "count", "total", "rate"]
GALLERY_IMAGES = 8


@dataclass(frozen=True)
class RunResult:
    """Record of one finished run.

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
        (0 for all) and ``data.fingerprint`` to the hash of the split.
    image_set : ImageSet
        The whole split.
    """
    image_set = data.load_dataset(config.data)
    data.check_classes(image_set)
    sample_size = data.resolve_sample_size(config.data.sample_size, len(image_set))
    resolved = dataclasses.replace(
        config.data, sample_size=sample_size, fingerprint=data.fingerprint(image_set)
    )
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
        config.extractor, config.latent_dim, n_samples=len(image_set), n_features=n_features
    )
    n_clusters = config.n_clusters or image_set.n_classes
    if n_clusters > len(image_set):
        raise ConfigError(
            f"n_clusters={n_clusters} is larger than the {len(image_set)} sampled images: "
            "use a larger --sample-size or a smaller --n-clusters."
        )


def load_init_encoder(config: RunConfig, image_set: data.ImageSet):
    """Load the warm-start encoder of ``config`` and check it fits the images, or return None."""
    if config.init_encoder is None:
        return None
    encoder = tracking.load_keras_model(config.init_encoder)
    n_features = int(np.prod(image_set.images.shape[1:]))
    models.check_init_encoder(encoder, n_features=n_features, latent_dim=config.latent_dim)
    return encoder


def run_name(config: RunConfig) -> str:
    """Name a run after its method, latent dimension and seed, e.g. ``ae-d32-s42``."""
    return f"{config.method}-d{config.latent_dim}-s{config.seed}"


def execute_run(
    config: RunConfig,
    image_set: data.ImageSet,
    *,
    experiment_id: str,
    parent_run_id: str | None = None,
    init_encoder=None,
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
    init_encoder : keras.Model or None, default=None
        The loaded ``config.init_encoder``, from :func:`load_init_encoder`.
    """
    check_fits(config, image_set)
    tags = {
        tracking.TAG_ROLE: tracking.ROLE_RUN,
        tracking.TAG_CONFIG_HASH: config.config_hash(),
        tracking.TAG_DATASET: image_set.name,
    }
    if parent_run_id is not None:
        tags[tracking.TAG_SWEEP_RUN_ID] = parent_run_id
    if config.init_encoder is not None:
        tags[tracking.TAG_INIT_ENCODER] = tracking.describe_model_source(config.init_encoder)

    with tracking.active_run(
        experiment_id, run_name=run_name(config), tags=tags, parent_run_id=parent_run_id
    ) as run_id:
        logger.info("Run %s (%s) started.", run_name(config), run_id)
        scores = _fit_and_score(config, image_set, init_encoder)
    _return_freed_memory()
    logger.info(
        "Run %s finished: ari=%.4f silhouette=%s.", run_name(config), scores[tracking.METRIC_ARI],
        f"{scores[tracking.METRIC_SILHOUETTE]:.4f}" if tracking.METRIC_SILHOUETTE in scores else "missing",
    )
    return RunResult(run_id=run_id, config=config, metrics=scores)


def _return_freed_memory() -> None:
    """Give the memory freed by a finished run back to the system.

    glibc keeps freed blocks for reuse, so without this the RSS of a long
    sweep grows by some of each run's arrays and TensorFlow buffers. Other
    C libraries have no ``malloc_trim`` and are left as they are.
    """
    import ctypes
    import gc

    # NOTE: even so, the RSS grew by 100 to 250 MB per autoencoder run on all 50,000 CIFAR-10
    # train images, for a cause not found, so sweeps of large samples run each in a new process.
    gc.collect()
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _fit_and_score(config: RunConfig, image_set: data.ImageSet, init_encoder=None) -> dict:
    n_clusters = config.n_clusters or image_set.n_classes
    sample = config.silhouette_sample
    n_samples = len(image_set.images)
    silhouette_mode = "sampled" if sample is not None and sample < n_samples else "exact"
    params = config.params()
    params["n_clusters"] = n_clusters
    params[tracking.PARAM_N_CLASSES] = image_set.n_classes
    params[tracking.PARAM_SILHOUETTE_MODE] = silhouette_mode
    params[tracking.PARAM_CLUSTER_SPACE] = "umap" if config.manifold == "umap" else "features"
    if config.manifold == "umap":
        params["umap_dim"] = config.umap_dim or n_clusters
    tracking.log_params(params)

    fitted = _extract_features(config, image_set, init_encoder)
    scores = {}
    space, manifold = fitted.features, None
    if config.manifold == "umap":
        from aeclust import embed

        start = time.perf_counter()
        manifold, space = embed.umap_embed(
            fitted.features,
            n_components=config.umap_dim or n_clusters,
            n_neighbors=config.umap_neighbors,
            random_state=config.seed,
        )
        scores[tracking.METRIC_MANIFOLD_SECONDS] = time.perf_counter() - start

    start = time.perf_counter()
    labels_pred, centers, clusterer = cluster.fit_clusters(
        space, clusterer=config.clusterer, n_clusters=n_clusters,
        n_init=config.gmm_n_init if config.clusterer == "gmm" else config.n_init,
        random_state=config.seed,
    )
    scores[tracking.METRIC_CLUSTER_SECONDS] = time.perf_counter() - start
    # The silhouette is scored in the space that was clustered (params: cluster_space).
    silhouette, _ = metrics.silhouette(
        space, labels_pred, random_state=config.seed, sample_size=config.silhouette_sample
    )
    scores.update(metrics.external_scores(image_set.labels, labels_pred))
    if np.isfinite(silhouette):
        scores[tracking.METRIC_SILHOUETTE] = silhouette
    else:
        # An undefined score is left out, not logged as NaN, and the tag gives the reason.
        n_found = len(np.unique(labels_pred))
        tracking.set_tags({tracking.TAG_SILHOUETTE_MISSING: f"undefined for {n_found} cluster(s)"})
    scores[tracking.METRIC_FIT_SECONDS] = fitted.fit_seconds
    scores[tracking.METRIC_N_SAMPLES] = n_samples
    scores[tracking.METRIC_LATENT_DIM] = config.latent_dim
    if fitted.reconstruction_mse is not None:
        scores[tracking.METRIC_RECONSTRUCTION_MSE] = fitted.reconstruction_mse
    tracking.log_metrics(scores)

    tracking.log_csv(
        confusion_rows(image_set.labels, labels_pred, image_set.class_names),
        tracking.ARTIFACT_CONFUSION_PAIRS,
        fieldnames=CONFUSION_COLUMNS,
    )
    _log_figures(config, image_set, fitted, space, labels_pred, centers)

    tracking.log_csv(
        [
            {"row": row, "label": int(label), "cluster": int(cluster_id)}
            for row, (label, cluster_id) in enumerate(zip(image_set.labels, labels_pred))
        ],
        tracking.ARTIFACT_ASSIGNMENTS,
        fieldnames=["row", "label", "cluster"],
    )
    example = data.to_features(image_set.images[:5])
    if config.extractor in AUTOENCODERS:
        tracking.log_encoder(fitted.model, example)
        _log_clusterer(
            image_set, fitted.model, labels_pred, centers,
            manifold=manifold, mixture=clusterer if config.clusterer == "gmm" else None,
        )
    else:
        tracking.log_pca(fitted.model, example)
    return scores


_FEATURES_BYTES = 256 * 2**20
"""Memory for the features that later runs of the same process may reuse; the oldest go first."""
_features_cache: dict = {}


def _extraction_key(config: RunConfig, image_set: data.ImageSet) -> tuple:
    """Build the key of an extractor fit: runs with equal keys get equal features on one sample."""
    return (
        id(image_set), config.extractor, config.latent_dim, config.seed, config.epochs,
        config.batch_size, config.learning_rate, config.init_encoder,
    )


def _extract_features(config: RunConfig, image_set: data.ImageSet, init_encoder):
    """Fit the run's extractor on the images, or reuse the fit of an earlier run in this process.

    Runs of one sweep that differ only in the steps after the extractor (for
    example ``conv_ae`` and ``conv_ae+umap+gmm``) get the same seeded
    features, so they are fitted once. The later run names the earlier one
    in its ``aeclust.features_from`` tag and logs the same curves and model.
    """
    key = _extraction_key(config, image_set)
    cached = _features_cache.get(key)
    if cached is not None:
        fitted, source_run_id, _ = cached
        logger.info("Reusing the %s features fitted by run %s.", config.extractor, source_run_id)
        tracking.set_tags({tracking.TAG_FEATURES_FROM: source_run_id})
        if fitted.history:
            tracking.log_history(fitted.history)
        return fitted
    fitted = _fit_extractor(config, image_set, init_encoder)
    cached_bytes = sum(entry[0].features.nbytes for entry in _features_cache.values())
    while _features_cache and cached_bytes + fitted.features.nbytes > _FEATURES_BYTES:
        cached_bytes -= _features_cache.pop(next(iter(_features_cache)))[0].features.nbytes
    # The image set is kept with the entry so that its id is not reused while the entry lives.
    _features_cache[key] = (fitted, tracking.active_run_id(), image_set)
    return fitted


def _flat_pixels(image_set: data.ImageSet) -> np.ndarray:
    """Return the uint8 images as rows of pixels, without a copy, for the autoencoder to scale."""
    return image_set.images.reshape(len(image_set.images), -1)


def _fit_extractor(config: RunConfig, image_set: data.ImageSet, init_encoder):
    """Fit the run's feature extractor on the images and log its training curves."""
    if config.extractor == "pca":
        return models.fit_pca(
            data.to_features(image_set.images), latent_dim=config.latent_dim, random_state=config.seed
        )
    epochs = progress.Progress(config.epochs, f"{run_name(config)} epochs", leave=False)
    fitted = models.fit_autoencoder(
        _flat_pixels(image_set),
        latent_dim=config.latent_dim,
        epochs=config.epochs,
        batch_size=config.batch_size,
        random_state=config.seed,
        on_epoch_end=lambda epoch, logs: epochs.update(f"val_loss={logs['val_loss']:.4f}"),
        init_encoder=init_encoder,
        learning_rate=config.learning_rate,
        image_shape=image_set.images.shape[1:] if config.extractor == "conv_ae" else None,
    )
    epochs.close()
    tracking.log_history(fitted.history)
    return fitted


def _log_clusterer(image_set, encoder, labels_pred, centers, *, manifold=None, mixture=None) -> None:
    import tempfile
    from pathlib import Path

    from aeclust import serving

    majority = cluster.majority_classes(image_set.labels, labels_pred)
    names = [image_set.class_names[majority[cluster_id]] for cluster_id in range(len(centers))]
    extra_packages = []
    if manifold is not None:
        extra_packages.append("umap-learn")
    if manifold is not None or mixture is not None:
        extra_packages.append("scikit-learn")
    with tempfile.TemporaryDirectory() as tmp:
        folder = serving.save_clusterer_files(
            Path(tmp) / "clusterer",
            centers=centers,
            cluster_class_names=names,
            image_shape=image_set.images.shape[1:],
            dataset=image_set.name,
            manifold=manifold,
            mixture=mixture,
        )
        tracking.log_clusterer(
            Path(serving.__file__).with_name("clusterer_model.py"),
            encoder=encoder, clusterer_folder=folder, code_path=Path(serving.__file__).parent,
            extra_packages=extra_packages,
        )


def confusion_rows(labels_true, labels_pred, class_names) -> list[dict]:
    """Build the rows of ``confusion_pairs.csv``.

    Rows with ``scope`` ``class`` give, for each true class (``class_a``),
    the class its images are most often clustered as (``class_b``), through
    the majority class of each cluster: ``count`` of its ``total`` images, a
    share of ``rate``. Rows with ``scope`` ``pair`` give the 15 unordered
    class pairs whose images most often share a cluster, as
    :func:`aeclust.cluster.shared_cluster_pairs` defines.
    """
    rows = [
        {
            "scope": "class",
            "class_a": row["true_class"],
            "class_b": row["confused_with"],
            "count": row["count"],
            "total": row["class_size"],
            "rate": row["share"],
        }
        for row in cluster.confusion_pairs(labels_true, labels_pred, class_names)
    ]
    rows += [
        {"scope": "pair", **row}
        for row in cluster.shared_cluster_pairs(labels_true, labels_pred, class_names)
    ]
    return rows


def _cluster_names(image_set, labels_pred) -> list[str]:
    majority = cluster.majority_classes(image_set.labels, labels_pred)
    return [
        f"{cluster_id}: {image_set.class_names[majority[cluster_id]]}"
        for cluster_id in range(int(labels_pred.max()) + 1)
    ]


def _log_figures(config, image_set, fitted, space, labels_pred, centers) -> None:
    """Log the t-SNE map, the confusion heatmap, the cluster gallery and reconstructions.

    A figure that fails is logged as a warning and skipped, so the metrics
    and the model of the run are still recorded.
    """
    figures = [
        (tracking.ARTIFACT_CONFUSION_MATRIX, lambda: _confusion_figure(config, image_set, labels_pred)),
        (tracking.ARTIFACT_GALLERY,
         lambda: _gallery_figure(config, image_set, space, labels_pred, centers)),
    ]
    if config.tsne:
        figures.append(
            (tracking.ARTIFACT_TSNE, lambda: _tsne_figure(config, image_set, fitted.features, labels_pred))
        )
    if fitted.reconstructions is not None:
        figures.append(
            (tracking.ARTIFACT_RECONSTRUCTIONS, lambda: _reconstructions_figure(config, image_set, fitted))
        )
    for artifact_file, draw in figures:
        start = time.perf_counter()
        try:
            fig = draw()
        except Exception:  # A figure must never cost the run its metrics and model.
            logger.exception("Drawing %s failed; the run goes on without it.", artifact_file)
            continue
        png = plots.render_png(fig)
        tracking.log_png(png, artifact_file)
        logger.debug("%s took %.1f s.", artifact_file, time.perf_counter() - start)


def draw_tsne_later(result: RunResult, image_set: data.ImageSet, *, tsne_samples: int) -> None:
    """Draw ``tsne.png`` for a finished run and log it to that run.

    The features come from this process's fit when it is still kept, else
    from the run's logged encoder or PCA. The clusters come from the run's
    ``cluster_assignments.csv``.
    """
    import csv
    import io

    config = dataclasses.replace(result.config, tsne=True, tsne_samples=tsne_samples)
    cached = _features_cache.get(_extraction_key(result.config, image_set))
    if cached is not None:
        features = cached[0].features
    elif config.extractor == "pca":
        model = tracking.load_sklearn_model(f"runs:/{result.run_id}/{tracking.MODEL_NAME_PCA}")
        features = model.transform(data.to_features(image_set.images))
    else:
        model = tracking.load_keras_model(f"runs:/{result.run_id}/{tracking.MODEL_NAME_ENCODER}")
        features = models.encode(model, _flat_pixels(image_set))
    text = tracking.read_artifact_text(result.run_id, tracking.ARTIFACT_ASSIGNMENTS)
    labels_pred = np.array([int(row["cluster"]) for row in csv.DictReader(io.StringIO(text))])
    fig = _tsne_figure(config, image_set, features, labels_pred)
    tracking.log_png(plots.render_png(fig), tracking.ARTIFACT_TSNE, run_id=result.run_id)
    tracking.set_tags({tracking.TAG_TSNE: "drawn after the sweep, as the best run of its method"},
                      run_id=result.run_id)


def _tsne_figure(config, image_set, features, labels_pred):
    from aeclust import embed

    index = np.arange(len(features))
    if len(index) > config.tsne_samples:
        rng = np.random.default_rng(config.seed)
        index = np.sort(rng.choice(len(index), size=config.tsne_samples, replace=False))
        logger.info("t-SNE draws %d of %d points.", len(index), len(features))
    embedding = embed.tsne_2d(features[index], random_state=config.seed)
    return plots.tsne_figure(
        embedding,
        image_set.labels[index],
        labels_pred[index],
        class_names=image_set.class_names,
        cluster_names=_cluster_names(image_set, labels_pred),
        title=f"{image_set.name}: {run_name(config)}",
    )


def _confusion_figure(config, image_set, labels_pred):
    table, order = cluster.matched_confusion(image_set.labels, labels_pred, image_set.n_classes)
    # Column j is the cluster matched to class j. Clusters left unmatched come last.
    column_names = [
        f"{cluster_id} → {image_set.class_names[column]}" if column < image_set.n_classes
        else str(cluster_id)
        for column, cluster_id in enumerate(order)
    ]
    return plots.confusion_figure(
        table,
        class_names=image_set.class_names,
        cluster_names=column_names,
        title=f"{image_set.name}: {run_name(config)}, clusters matched to classes",
    )


def _gallery_figure(config, image_set, features, labels_pred, centers):
    groups = cluster.nearest_to_centers(features, labels_pred, centers, n=GALLERY_IMAGES)
    majority = cluster.majority_classes(image_set.labels, labels_pred)
    titles = []
    for cluster_id in range(len(centers)):
        members = labels_pred == cluster_id
        purity = float(np.mean(image_set.labels[members] == majority[cluster_id])) if members.any() else 0.0
        titles.append(f"{cluster_id}: {image_set.class_names[majority[cluster_id]]} ({purity:.0%})")
    return plots.gallery_figure(
        image_set.images, groups, row_titles=titles,
        title=f"{run_name(config)}: {GALLERY_IMAGES} images nearest each centroid (majority class, purity)",
    )


def _reconstructions_figure(config, image_set, fitted):
    originals = image_set.images[fitted.reconstruction_index]
    pixels = np.clip(np.round(fitted.reconstructions * 255.0), 0, 255).astype(np.uint8)
    return plots.reconstructions_figure(
        originals, pixels.reshape(originals.shape), title=f"{run_name(config)}: input and reconstruction"
    )
