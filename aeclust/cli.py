"""The ``aeclust`` command line: train, sweep and compare.

The MLproject entry points call these same commands, so ``-P latent_dims=16,32``
and ``--latent-dims 16,32`` mean the same thing. An optional value that is
empty (``''``, the MLproject default) counts as not given.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path

import click

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# MLflow draws a progress bar per downloaded artifact; compare downloads one per best run.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from aeclust.config import (  # noqa: E402
    CLUSTERERS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_GMM_N_INIT,
    DEFAULT_LATENT_DIMS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_UMAP_NEIGHBORS,
    MANIFOLDS,
    DEFAULT_SAMPLE_SIZE,
    DEFAULT_SEED,
    DEFAULT_TSNE_SAMPLES,
    METHODS,
    METRICS,
    CompareConfig,
    ConfigError,
    DataConfig,
    Interrupted,
    RunConfig,
    SweepConfig,
    default_experiment,
    method_name,
)

logger = logging.getLogger("aeclust")

USAGE_EXIT = 2
FAILURE_EXIT = 1
INTERRUPTED_EXIT = 130


class OptionalInt(click.ParamType):
    """An integer, or an empty string meaning 'not given'."""

    name = "integer"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, int):
            return value
        if str(value).strip() == "":
            return None
        try:
            return int(value)
        except ValueError:
            self.fail(f"{value!r} is not an integer.", param, ctx)


class StrictBool(click.ParamType):
    """A boolean written as true/false, 1/0 or yes/no (any case); nothing else is accepted."""

    name = "boolean"
    TRUE = ("true", "1", "yes")
    FALSE = ("false", "0", "no")

    def convert(self, value, param, ctx):
        if isinstance(value, bool) or value is None:
            return value
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        self.fail(f"{value!r} is not a boolean: use true/false, 1/0 or yes/no.", param, ctx)


class IntList(click.ParamType):
    """Comma-separated integers such as ``16,32,64``; the word ``default`` means 'not given'."""

    name = "list"

    def convert(self, value, param, ctx):
        if value is None or isinstance(value, tuple):
            return value
        if str(value).strip() == "default":
            return None
        try:
            return tuple(int(part) for part in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers, e.g. 16,32.", param, ctx)


class OptionalChoice(click.Choice):
    """A choice, or an empty string meaning 'not given'."""

    def convert(self, value, param, ctx):
        if value is None or str(value).strip() == "":
            return None
        return super().convert(value, param, ctx)


class MethodList(click.ParamType):
    """Comma-separated methods such as ``ae,pca,ae+umap+gmm``."""

    name = "list"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        names = tuple(part.strip() for part in str(value).split(",") if part.strip())
        if not names:
            self.fail(f"{value!r} is invalid: give a comma-separated list of methods, e.g. ae,pca.",
                      param, ctx)
        for name in names:
            try:
                method_name(name)
            except ConfigError as exc:
                self.fail(str(exc), param, ctx)
        return names


def _empty_to_none(ctx, param, value):
    return None if value is None or str(value).strip() == "" else value


def _apply(command, options):
    for option in reversed(options):
        command = option(command)
    return command


def data_options(command):
    """Add the options that choose the images: data set, split, sample and seed."""
    return _apply(command, [
        click.option("--dataset", default="digits", show_default=True,
                     help="Data set: emnist, cifar10, mnist, fashion_mnist (TFDS), digits "
                          "(scikit-learn, offline), or the path of a class-per-folder image "
                          "folder or an .npz file."),
        click.option("--split", default="train", show_default=True,
                     help="Split to sample from (for an .npz file with a split array: "
                          "train or test)."),
        click.option("--data-dir", default=None, callback=_empty_to_none,
                     help="TFDS data directory holding prepared data sets.  [default: TFDS's own]"),
        click.option("--sample-size", type=OptionalInt(), default=None,
                     help=f"Number of images drawn with the seed; 0 means the whole split.  "
                          f"[default: {DEFAULT_SAMPLE_SIZE}, or the whole split when it is smaller]"),
        click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True,
                     help="Random seed for the sample, the network, K-means and t-SNE."),
    ])


def store_options(command):
    """Add the options that choose the tracking store and the log level."""
    return _apply(command, [
        click.option("--experiment", default=None, callback=_empty_to_none,
                     help="MLflow experiment name.  [default: aeclust-<dataset>]"),
        click.option("--tracking-uri", default=None, callback=_empty_to_none,
                     help="MLflow tracking URI.  [default: $MLFLOW_TRACKING_URI, "
                          "else sqlite:///mlflow.db in the working directory]"),
        click.option("--quiet", is_flag=True,
                     help="Log warnings and errors only, with no progress output."),
        click.option("--debug", is_flag=True, help="Log debug lines and show tracebacks."),
    ])


def training_options(command):
    """Add the options shared by train and sweep."""
    options = [
        click.option("--epochs", type=click.IntRange(min=1), default=DEFAULT_EPOCHS,
                     show_default=True,
                     help="Maximum autoencoder epochs; early stopping (patience 3) may stop sooner."),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE,
                     show_default=True, help="Autoencoder mini-batch size, in images."),
        click.option("--n-clusters", type=OptionalInt(), default=None,
                     help="Number of K-means clusters.  [default: number of classes]"),
        click.option("--tsne/--no-tsne", default=True, show_default=True,
                     help="Draw tsne.png for each run (openTSNE)."),
        click.option("--tsne-samples", type=click.IntRange(min=10), default=DEFAULT_TSNE_SAMPLES,
                     show_default=True,
                     help="Maximum number of points in the t-SNE figure, sampled with the seed."),
        click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True),
                     default=DEFAULT_LEARNING_RATE, show_default=True,
                     help="Adam learning rate of the autoencoders."),
        click.option("--manifold", type=OptionalChoice(MANIFOLDS), default=None,
                     help="Step between features and clusterer, for methods that do not name "
                          "one: umap (N2D) or none.  [default: none]"),
        click.option("--clusterer", type=OptionalChoice(CLUSTERERS), default=None,
                     help="Clusterer for methods that do not name one: kmeans, or gmm (Gaussian "
                          "mixture, full covariance).  [default: kmeans]"),
        click.option("--umap-neighbors", type=click.IntRange(min=2), default=DEFAULT_UMAP_NEIGHBORS,
                     show_default=True, help="n_neighbors of the UMAP step."),
        click.option("--umap-dim", type=OptionalInt(), default=None,
                     help="Output dimensions of the UMAP step.  [default: number of clusters]"),
        click.option("--silhouette-sample", type=OptionalInt(), default=None,
                     help="Estimate the silhouette on a seeded sample of this many points.  "
                          "[default: exact, on every point]"),
        click.option("--gmm-n-init", type=click.IntRange(min=1), default=DEFAULT_GMM_N_INIT,
                     show_default=True,
                     help="Initialisations of the Gaussian mixture; the best likelihood is kept."),
    ]
    return _apply(command, options)


def handle_errors(command):
    """Turn expected errors into a one-line message and an exit status."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        from aeclust import progress
        from aeclust.compare import CompareError
        from aeclust.data import DataSourceError
        from aeclust.serving import ImageShapeError
        from aeclust.sweep import SweepFailedError
        from aeclust.tracking import ModelLoadError

        debug = kwargs.get("debug", False)
        setup_logging(quiet=kwargs.get("quiet", False), debug=debug)
        _raise_on_signals()
        progress.configure(enabled=not kwargs.get("quiet", False))
        try:
            return command(*args, **kwargs)
        except (ConfigError, DataSourceError, ImageShapeError, ModelLoadError) as exc:
            if debug:
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(USAGE_EXIT)
        except (CompareError, SweepFailedError) as exc:
            if debug:
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(FAILURE_EXIT)
        except KeyboardInterrupt as exc:
            click.echo(f"Error: stopped by {exc or 'SIGINT'}; the run in progress is marked KILLED.",
                       err=True)
            sys.exit(INTERRUPTED_EXIT)

    return wrapper


def _raise_on_signals() -> None:
    """Turn SIGINT and SIGTERM into :class:`Interrupted`, so open runs end as KILLED."""
    import signal

    from aeclust import tracking

    def interrupt(signum, frame):
        # Raised at once, or after the MLflow write in progress, so the store stays consistent.
        tracking.interrupt(Interrupted(signal.Signals(signum).name))

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)


def setup_logging(*, quiet: bool, debug: bool) -> None:
    """Send aeclust's log lines to stderr at the chosen level."""
    level = logging.INFO
    if quiet:
        level = logging.WARNING
    if debug:
        level = logging.DEBUG
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def build_data_config(dataset, split, data_dir, sample_size) -> DataConfig:
    """Build the data config from the shared options."""
    return DataConfig(dataset=dataset, split=split, data_dir=data_dir, sample_size=sample_size)


@click.group()
@click.version_option(package_name="aeclust")
def main():
    """Do learned features cluster images better than PCA, and at what size?

    aeclust trains a dense autoencoder and a PCA baseline per latent dimension,
    clusters the features with K-means, scores them (silhouette, ARI, NMI,
    ACC) and records everything in MLflow.
    """


@main.command()
@data_options
@store_options
@training_options
@click.option("--method", default="ae", show_default=True,
              help="Feature extractor (ae: dense autoencoder, conv_ae: convolutional autoencoder, "
                   "pca), optionally with steps after it, e.g. ae+umap+gmm.")
@click.option("--latent-dim", type=int, default=32, show_default=True,
              help="Number of features (autoencoder latent units or PCA components).")
@click.option("--init-encoder", default=None, callback=_empty_to_none,
              help="Warm start: MLflow URI of an encoder to start from, e.g. "
                   "models:/aeclust-emnist-encoder@best (same image size and --latent-dim).")
@handle_errors
def train(dataset, split, data_dir, sample_size, seed, experiment, tracking_uri, quiet, debug,
          epochs, batch_size, n_clusters, tsne, tsne_samples, learning_rate, manifold, clusterer,
          umap_neighbors, umap_dim, silhouette_sample, gmm_n_init, method, latent_dim, init_encoder):
    """Train and score one configuration as one MLflow run."""
    from aeclust import pipeline, tracking

    config = RunConfig(
        data=build_data_config(dataset, split, data_dir, sample_size),
        method=method_name(method, manifold=manifold, clusterer=clusterer),
        latent_dim=latent_dim, seed=seed, epochs=epochs, batch_size=batch_size,
        n_clusters=n_clusters, tsne=tsne, tsne_samples=tsne_samples, init_encoder=init_encoder,
        learning_rate=learning_rate, umap_neighbors=umap_neighbors, umap_dim=umap_dim,
        gmm_n_init=gmm_n_init, silhouette_sample=silhouette_sample,
    )
    config, image_set = pipeline.load_data(config)
    image_set = pipeline.draw_sample(config, image_set)
    pipeline.check_fits(config, image_set)

    tracking.set_tracking_uri(tracking_uri)
    encoder = pipeline.load_init_encoder(config, image_set)
    experiment_id = tracking.get_or_create_experiment(experiment or default_experiment(dataset))
    result = pipeline.execute_run(
        config, image_set, experiment_id=experiment_id, init_encoder=encoder
    )
    click.echo(f"run_id={result.run_id} " + " ".join(
        f"{key}={result.metrics[key]:.4f}" for key in ("ari", "nmi", "acc", "silhouette")
        if key in result.metrics
    ))


@main.command()
@data_options
@store_options
@training_options
@click.option("--methods", type=MethodList(), default=",".join(METHODS), show_default=True,
              help="Comma-separated methods to run: ae, conv_ae or pca, each optionally with "
                   "+umap and +kmeans or +gmm, e.g. ae,pca,ae+umap+gmm.")
@click.option("--latent-dims", type=IntList(), default=None,
              help="Comma-separated latent dimensions.  [default: "
                   + ",".join(map(str, DEFAULT_LATENT_DIMS))
                   + "; from this default list, dims PCA cannot give on small images are skipped]")
@click.option("--seeds", type=IntList(), default=None,
              help="Comma-separated seeds, one run per seed and configuration.  [default: --seed]")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes that run configurations at once; the CPU threads are "
                   "split between them.")
@click.option("--tsne-runs", type=click.Choice(("all", "best")), default="all", show_default=True,
              help="Draw tsne.png for every run, or only for the best run of each method "
                   "after the sweep.")
@click.option("--executor", type=click.Choice(("local", "ray")), default="local", show_default=True,
              help="Where configurations run: local processes (--jobs), or Ray tasks of the "
                   "cluster at --ray-address.")
@click.option("--ray-address", default=None, callback=_empty_to_none,
              help="Address of a running Ray cluster, e.g. 10.0.0.5:6379 or auto.  "
                   "[default: $RAY_ADDRESS]")
@click.option("--ray-cpus-per-task", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPUs each Ray task asks for; its thread pools use that many threads.")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Reuse configurations that already have a FINISHED run in the experiment "
                   "and run only the missing or failed ones.")
@handle_errors
def sweep(dataset, split, data_dir, sample_size, seed, experiment, tracking_uri, quiet, debug,
          epochs, batch_size, n_clusters, tsne, tsne_samples, learning_rate, manifold, clusterer,
          umap_neighbors, umap_dim, silhouette_sample, gmm_n_init, methods, latent_dims, seeds, jobs, tsne_runs, executor, ray_address, ray_cpus_per_task,
          resume):
    """Run every (method, latent_dim, seed) as a run nested under one sweep run."""
    from aeclust import sweep as sweep_module
    from aeclust import tracking

    base = RunConfig(
        data=build_data_config(dataset, split, data_dir, sample_size), seed=seed, epochs=epochs,
        batch_size=batch_size, n_clusters=n_clusters, tsne=tsne, tsne_samples=tsne_samples,
        learning_rate=learning_rate, umap_neighbors=umap_neighbors, umap_dim=umap_dim,
        gmm_n_init=gmm_n_init, silhouette_sample=silhouette_sample,
    )
    config = SweepConfig(
        base=base,
        methods=tuple(method_name(m, manifold=manifold, clusterer=clusterer) for m in methods),
        latent_dims=latent_dims or DEFAULT_LATENT_DIMS,
        seeds=seeds or (seed,),
        latent_dims_given=latent_dims is not None,
        tsne_runs=tsne_runs,
    )
    tracking.set_tracking_uri(tracking_uri)
    result = sweep_module.run_sweep(
        config, experiment=experiment or default_experiment(dataset), resume=resume, jobs=jobs,
        executor=executor, ray_address=ray_address or os.environ.get("RAY_ADDRESS"),
        cpus_per_task=ray_cpus_per_task,
    )
    click.echo(
        f"sweep_run_id={result.sweep_run_id} runs={len(result.results)} reused={len(result.reused)}"
    )


@main.command()
@click.option("--dataset", default="digits", show_default=True,
              help="Data set of the sweep; it names the experiment aeclust-<dataset>.")
@store_options
@click.option("--sweep-run-id", default=None, callback=_empty_to_none,
              help="Parent run of the sweep to compare.  [default: the latest sweep in the experiment]")
@click.option("--metric", type=OptionalChoice(METRICS), default=None,
              help="Metric that chooses the best latent_dim.  "
                   "[default: ari; silhouette when the runs have no labels]")
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the best run's encoder and clusterer as aeclust-<dataset>-encoder "
                   "and aeclust-<dataset>-clusterer; their alias @best moves only when the run "
                   "beats the current holder.")
@click.option("--force", is_flag=True,
              help="Move the best alias even when the new version does not beat its holder.")
@click.option("--register-model", type=StrictBool(), default=None, hidden=True,
              help="true or false; overrides --register (for the MLproject parameter).")
@click.option("--output-dir", default=None, callback=_empty_to_none,
              help="Folder for report.html, summary.md, summary.json and dim_optimization.png.  "
                   "[default: aeclust-output/<experiment>]")
@click.option("--lang", "--language", "language", type=click.Choice(("en", "zh-CN")), default="en",
              show_default=True, help="Language of summary.md and report.html.")
@handle_errors
def compare(dataset, experiment, tracking_uri, quiet, debug, sweep_run_id, metric, register, force,
            register_model, output_dir, language):
    """Choose the best latent dimension of a sweep, write the summary, register the encoder.

    Compare reads the runs from the tracking store; --dataset only names the
    experiment.
    """
    from aeclust import compare as compare_module
    from aeclust import report, tracking

    tracking.set_tracking_uri(tracking_uri)
    config = CompareConfig(
        experiment=experiment or default_experiment(dataset),
        sweep_run_id=sweep_run_id,
        metric=metric,
        register=register if register_model is None else register_model,
        force=force,
        output_dir=output_dir,
        language=language,
    )
    result = compare_module.run_compare(config)
    click.echo(report.summary_markdown(result.summary, language=language))
    click.echo(f"compare_run_id={result.compare_run_id} output_dir={result.output_dir}")
    for name, version in result.registered_versions.items():
        click.echo(f"registered models:/{name}@best (version {version})")


@main.command()
@click.option("--model-uri", required=True,
              help="Clusterer to use, e.g. models:/aeclust-emnist-clusterer@best or runs:/<id>/clusterer.")
@click.option("--input", "input_path", required=True, type=click.Path(path_type=Path),
              help="A folder of PNG/JPEG images (searched recursively), one image file, or an .npz "
                   "file with an 'images' array.")
@click.option("--output", "output_path", required=True, type=click.Path(path_type=Path),
              help="Where to write the assignments: .csv, or .parquet.")
@click.option("--resize", is_flag=True,
              help="Resize and convert images to the model's image shape instead of rejecting them.")
@click.option("--embedding", is_flag=True,
              help="Add the encoder output of each image as a JSON list in an embedding column.")
@click.option("--tracking-uri", default=None, callback=_empty_to_none,
              help="MLflow tracking URI.  [default: $MLFLOW_TRACKING_URI, "
                   "else sqlite:///mlflow.db in the working directory]")
@click.option("--quiet", is_flag=True, help="Log warnings and errors only.")
@click.option("--debug", is_flag=True, help="Log debug lines and show tracebacks.")
@handle_errors
def predict(model_uri, input_path, output_path, resize, embedding, tracking_uri, quiet, debug):
    """Assign new images to the clusters of a logged or registered clusterer.

    Writes one row per image: id (file path or .npz row), cluster, class_name
    (the cluster's majority class in training) and distance (to the centroid).
    """
    from aeclust import predict as predict_module
    from aeclust import tracking

    tracking.set_tracking_uri(tracking_uri)
    result = predict_module.predict_images(
        model_uri, input_path, output_path, resize=resize, embedding=embedding
    )
    click.echo(f"clustered {len(result)} images into {output_path}")


if __name__ == "__main__":
    main()
