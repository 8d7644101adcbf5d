"""Frozen configurations for one run, a sweep and a compare, with their checks.

Everything that changes a run's result is a field of :class:`RunConfig`, so
the config's hash identifies the run. The command line builds these objects
once and the library only reads them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import PurePath

EXTRACTORS = ("ae", "conv_ae", "pca")
"""Feature extractors: dense autoencoder, convolutional autoencoder and the PCA baseline."""

AUTOENCODERS = ("ae", "conv_ae")
"""Extractors that train a Keras encoder."""

MANIFOLDS = ("none", "umap")
"""Steps between the features and the clusterer: none, or UMAP (as in N2D)."""

CLUSTERERS = ("kmeans", "gmm")
"""Clusterers: K-means, or a full-covariance Gaussian mixture."""

METHODS = ("ae", "pca")
"""The study's methods, which a sweep runs by default."""

DEFAULT_LEARNING_RATE = 1e-3
DEFAULT_UMAP_NEIGHBORS = 15
DEFAULT_GMM_N_INIT = 3

METRICS = ("ari", "nmi", "acc", "silhouette")
"""Run metrics that compare can choose the best latent dimension by."""

DEFAULT_LATENT_DIMS = (16, 32, 64, 128, 256)
DEFAULT_SAMPLE_SIZE = 5000
DEFAULT_SEED = 42
DEFAULT_EPOCHS = 20
DEFAULT_BATCH_SIZE = 256
DEFAULT_N_INIT = 10
EARLY_STOPPING_PATIENCE = 3
VALIDATION_SPLIT = 0.1
DEFAULT_TSNE_SAMPLES = 5000


class ConfigError(ValueError):
    """Invalid user input, raised before any work starts."""


class Interrupted(KeyboardInterrupt):
    """The process received SIGINT or SIGTERM; runs in progress end as KILLED."""


@dataclass(frozen=True)
class DataConfig:
    """Image source and sample of a run.

    Parameters
    ----------
    dataset : str, default="digits"
        A TFDS name (``emnist``, ``cifar10``, ``mnist``, ``fashion_mnist``),
        ``digits``, or the path of an image folder or ``.npz`` file.
    split : str, default="train"
        The split to sample from.
    data_dir : str or None, default=None
        TFDS data directory.
    sample_size : int or None, default=None
        Number of images drawn with ``seed``; 0 means the whole split and
        None means 5,000, or the whole split when it has fewer images.
    fingerprint : str or None, default=None
        Hash of the loaded split's pixels and labels, set when the data is
        loaded. It is part of the config hash, so a resumed sweep reruns the
        configurations whose images have changed since their run.
    """

    dataset: str = "digits"
    split: str = "train"
    data_dir: str | None = None
    sample_size: int | None = None
    fingerprint: str | None = None

    def __post_init__(self):
        if self.sample_size is not None and self.sample_size < 0:
            raise ConfigError(
                f"sample_size={self.sample_size} is invalid: give a positive number "
                "of images, or 0 for the whole split."
            )


@dataclass(frozen=True)
class RunConfig:
    """One (method, latent_dim, seed) configuration of the study.

    Parameters
    ----------
    data : DataConfig
        The images to use.
    method : str, default="ae"
        Feature extractor (``ae``, ``conv_ae`` or ``pca``), optionally followed
        by ``+umap`` and ``+gmm``, as :func:`parse_method` reads it. It is
        stored in canonical form (:func:`method_name`).
    latent_dim : int, default=32
        Size of the features that are clustered.
    seed : int, default=42
        Seeds the sample, the network, K-means and t-SNE.
    epochs : int, default=20
        Maximum autoencoder epochs; early stopping may end training sooner.
    batch_size : int, default=256
        Autoencoder mini-batch size.
    n_clusters : int or None, default=None
        Clusters (K-means clusters or mixture components); None means the
        number of classes.
    n_init : int, default=10
        K-means restarts.
    tsne : bool, default=True
        Whether to draw the t-SNE figure.
    tsne_samples : int, default=5000
        Most points drawn in the t-SNE figure, sampled with ``seed``.
    init_encoder : str or None, default=None
        MLflow URI of an encoder whose weights start training (autoencoders only).
    learning_rate : float, default=1e-3
        Adam learning rate of the autoencoders.
    umap_neighbors : int, default=15
        ``n_neighbors`` of the UMAP step.
    umap_dim : int or None, default=None
        Output dimensions of the UMAP step; None means the number of clusters.
    gmm_n_init : int, default=3
        Initialisations of the Gaussian mixture (each from a K-means start);
        the best likelihood is kept.
    silhouette_sample : int or None, default=None
        Score the silhouette on a seeded sample of this many points instead
        of exactly; None means exact.
    """

    data: DataConfig = field(default_factory=DataConfig)
    method: str = "ae"
    latent_dim: int = 32
    seed: int = DEFAULT_SEED
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    n_clusters: int | None = None
    n_init: int = DEFAULT_N_INIT
    tsne: bool = True
    tsne_samples: int = DEFAULT_TSNE_SAMPLES
    init_encoder: str | None = None
    learning_rate: float = DEFAULT_LEARNING_RATE
    umap_neighbors: int = DEFAULT_UMAP_NEIGHBORS
    umap_dim: int | None = None
    gmm_n_init: int = DEFAULT_GMM_N_INIT
    silhouette_sample: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "method", method_name(self.method))
        if self.init_encoder is not None and self.extractor not in AUTOENCODERS:
            raise ConfigError(
                f"init_encoder={self.init_encoder!r} needs an autoencoder method "
                f"({', '.join(AUTOENCODERS)}), not {self.method}."
            )
        if not self.learning_rate > 0:
            raise ConfigError(
                f"learning_rate={self.learning_rate} is invalid: give a positive number, e.g. 0.001."
            )
        if self.gmm_n_init < 1 or self.n_init < 1:
            raise ConfigError(
                f"n_init={self.n_init}, gmm_n_init={self.gmm_n_init}: give 1 or more for each."
            )
        if self.silhouette_sample is not None and self.silhouette_sample < 2:
            raise ConfigError(
                f"silhouette_sample={self.silhouette_sample} is invalid: give 2 or more points, "
                "or leave it unset for the exact silhouette."
            )
        if self.umap_neighbors < 2:
            raise ConfigError(f"umap_neighbors={self.umap_neighbors} is invalid: give 2 or more.")
        if self.umap_dim is not None and self.umap_dim < 1:
            raise ConfigError(
                f"umap_dim={self.umap_dim} is invalid: give 1 or more, or leave it unset "
                "to use the number of clusters."
            )
        check_latent_dim(self.latent_dim)
        if self.epochs < 1:
            raise ConfigError(f"epochs={self.epochs} is invalid: give 1 or more.")
        if self.tsne_samples < 10:
            raise ConfigError(
                f"tsne_samples={self.tsne_samples} is invalid: give 10 or more points, "
                "or turn the figure off with --no-tsne."
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} is invalid: give 1 or more.")
        if self.n_clusters is not None and self.n_clusters < 2:
            raise ConfigError(
                f"n_clusters={self.n_clusters} is invalid: give 2 or more, "
                "or leave it unset to use the number of classes."
            )

    @property
    def extractor(self) -> str:
        """The feature extractor: ``ae``, ``conv_ae`` or ``pca``."""
        return parse_method(self.method)[0]

    @property
    def manifold(self) -> str:
        """The step between features and clusterer: ``none`` or ``umap``."""
        return parse_method(self.method)[1]

    @property
    def clusterer(self) -> str:
        """The clusterer: ``kmeans`` or ``gmm``."""
        return parse_method(self.method)[2]

    def params(self) -> dict:
        """Flatten the config into the run parameters that MLflow records."""
        umap = self.manifold == "umap"
        return {
            "dataset": self.data.dataset,
            "split": self.data.split,
            "sample_size": self.data.sample_size,
            "data_fingerprint": self.data.fingerprint,
            "method": self.method,
            "extractor": self.extractor,
            "manifold": self.manifold,
            "clusterer": self.clusterer,
            "learning_rate": self.learning_rate if self.extractor in AUTOENCODERS else None,
            "umap_neighbors": self.umap_neighbors if umap else None,
            "umap_dim": self.umap_dim if umap else None,
            "gmm_n_init": self.gmm_n_init if self.clusterer == "gmm" else None,
            "silhouette_sample": self.silhouette_sample,
            "latent_dim": self.latent_dim,
            "seed": self.seed,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "n_clusters": self.n_clusters,
            "n_init": self.n_init,
            "tsne_samples": self.tsne_samples if self.tsne else 0,
            "init_encoder": self.init_encoder,
        }

    def config_hash(self) -> str:
        """Hash the fields that change the result, as a short hex string."""
        from aeclust import __version__

        identity = self.params()
        identity["version"] = __version__
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SweepConfig:
    """The grid of runs that one sweep trains.

    Parameters
    ----------
    base : RunConfig
        Options shared by every run; its method, latent_dim and seed are
        replaced by the grid's values.
    methods : tuple of str
        Methods to run, each as :func:`parse_method` reads it (e.g. ``ae+umap+gmm``).
    latent_dims : tuple of int
        Latent dimensions to run.
    seeds : tuple of int
        Seeds to run.
    latent_dims_given : bool, default=True
        False when the dims are the default list, in which case a dim that a
        method cannot give on the chosen data is skipped with a warning
        instead of rejected.
    tsne_runs : {"all", "best"}, default="all"
        Which runs draw ``tsne.png`` when ``base.tsne`` is on: every run, or
        after the sweep only the best run of each method (by ARI, or by
        silhouette without labels), which saves the t-SNE of the others.
    """

    base: RunConfig
    methods: tuple = METHODS
    latent_dims: tuple = DEFAULT_LATENT_DIMS
    seeds: tuple = (DEFAULT_SEED,)
    latent_dims_given: bool = True
    tsne_runs: str = "all"

    def __post_init__(self):
        if self.tsne_runs not in ("all", "best"):
            raise ConfigError(f"tsne_runs={self.tsne_runs!r} is not supported: use all or best.")
        names = []
        for method in self.methods:
            try:
                name = method_name(method)
            except ConfigError as exc:
                raise ConfigError(f"methods contains {method!r}, which is not supported: {exc}") from None
            if name not in names:
                names.append(name)
        object.__setattr__(self, "methods", tuple(names))
        if not self.methods or not self.latent_dims or not self.seeds:
            raise ConfigError("methods, latent_dims and seeds must each list at least one value.")
        for latent_dim in self.latent_dims:
            check_latent_dim(latent_dim)

    def run_configs(self) -> list[RunConfig]:
        """Expand the grid into run configs, ordered by seed, method, then dim."""
        # With tsne_runs="best" the runs draw no t-SNE; the sweep draws the best ones afterwards.
        tsne = self.base.tsne and self.tsne_runs == "all"
        return [
            dataclasses.replace(self.base, method=method, latent_dim=latent_dim, seed=seed, tsne=tsne)
            for seed in self.seeds
            for method in self.methods
            for latent_dim in self.latent_dims
        ]


@dataclass(frozen=True)
class CompareConfig:
    """Options of compare: the sweep to read back and the outputs to write.

    Parameters
    ----------
    experiment : str
        Experiment that contains the sweep.
    sweep_run_id : str or None, default=None
        Parent run of the sweep; None means the latest sweep in ``experiment``.
    metric : str or None, default=None
        Metric to choose by; None means ``ari``, or ``silhouette`` when the
        runs have no labels to score against.
    register : bool, default=True
        Whether to register the best encoder and clusterer and point their
        ``best`` alias at them when they beat the current holder.
    force : bool, default=False
        Move the ``best`` alias even when the new version does not beat the holder.
    output_dir : str or None, default=None
        Folder for the report, the summary files and the figure; None means
        ``aeclust-output/<experiment>``.
    language : {"en", "zh-CN"}, default="en"
        Language of ``summary.md``.
    """

    experiment: str
    sweep_run_id: str | None = None
    metric: str | None = None
    register: bool = True
    force: bool = False
    output_dir: str | None = None
    language: str = "en"

    def __post_init__(self):
        if self.metric is not None and self.metric not in METRICS:
            raise ConfigError(
                f"metric={self.metric!r} is not supported: use one of {', '.join(METRICS)}."
            )
        if self.language not in ("en", "zh-CN"):
            raise ConfigError(f"language={self.language!r} is not supported: use en or zh-CN.")


def check_latent_dim(latent_dim: int) -> None:
    """Raise :class:`ConfigError` unless ``latent_dim`` is a positive integer."""
    if latent_dim < 1:
        raise ConfigError(
            f"latent_dim={latent_dim} is invalid: give a positive number of features, "
            "for example 16."
        )


def parse_method(method: str, *, manifold: str | None = None, clusterer: str | None = None):
    """Split a method such as ``ae+umap+gmm`` into its extractor, manifold and clusterer.

    A step that ``method`` does not name takes the value of ``manifold`` or
    ``clusterer``, else ``none`` and ``kmeans``.

    Returns
    -------
    extractor, manifold, clusterer : str

    Examples
    --------
    >>> parse_method("ae+umap+gmm")
    ('ae', 'umap', 'gmm')
    >>> parse_method("pca", clusterer="gmm")
    ('pca', 'none', 'gmm')
    """
    parts = [part.strip() for part in str(method).split("+")]
    hint = (
        f"write an extractor ({', '.join(EXTRACTORS)}), then optionally +umap and "
        "+kmeans or +gmm, for example ae+umap+gmm."
    )
    if not parts or parts[0] not in EXTRACTORS:
        raise ConfigError(f"method={method!r} is not supported: {hint}")
    named = {"manifold": None, "clusterer": None}
    for part in parts[1:]:
        if part in MANIFOLDS:
            kind = "manifold"
        elif part in CLUSTERERS:
            kind = "clusterer"
        else:
            raise ConfigError(f"method={method!r} is not supported: {hint}")
        if named[kind] is not None:
            raise ConfigError(f"method={method!r} is not supported: {hint}")
        named[kind] = part
    for kind, value, choices in (("manifold", manifold, MANIFOLDS), ("clusterer", clusterer, CLUSTERERS)):
        if value is not None and value not in choices:
            raise ConfigError(f"{kind}={value!r} is not supported: use one of {', '.join(choices)}.")
    return (
        parts[0],
        named["manifold"] or manifold or "none",
        named["clusterer"] or clusterer or "kmeans",
    )


def method_name(method: str, *, manifold: str | None = None, clusterer: str | None = None) -> str:
    """Write a method in its canonical form: extractor, then ``+umap``, then ``+gmm``.

    The defaults (no manifold step, K-means) are left out, so ``ae+kmeans``
    is ``ae`` and the study's methods keep their names.

    Examples
    --------
    >>> method_name("ae+gmm+umap"), method_name("pca+kmeans"), method_name("ae", manifold="umap")
    ('ae+umap+gmm', 'pca', 'ae+umap')
    """
    extractor, manifold, clusterer = parse_method(method, manifold=manifold, clusterer=clusterer)
    return "+".join(
        [extractor]
        + (["umap"] if manifold == "umap" else [])
        + (["gmm"] if clusterer == "gmm" else [])
    )


SPLIT_FOLDER_NAMES = ("train", "test", "val", "validation")


def source_name(dataset: str) -> str:
    """Name a data source for experiments and models: the data set, file stem or folder name.

    A folder named after a split takes its parent's name as a prefix, so
    ``cifar10/train`` is ``cifar10-train`` rather than ``train``.

    Examples
    --------
    >>> source_name("emnist"), source_name("data/letters.npz"), source_name("/tmp/cifar10/train/")
    ('emnist', 'letters', 'cifar10-train')
    """
    if "/" not in dataset and "." not in dataset:
        return dataset
    path = PurePath(dataset)
    if path.suffix == ".npz":
        return path.stem
    if path.name in SPLIT_FOLDER_NAMES and path.parent.name:
        return f"{path.parent.name}-{path.name}"
    return path.name


def default_experiment(dataset: str) -> str:
    """Name the experiment for a data set: ``aeclust-<source name>``."""
    return f"aeclust-{source_name(dataset)}"
