"""Every MLflow call of aeclust, and the names of its params, metrics, tags and artifacts.

Runs are created through :class:`mlflow.MlflowClient` in an explicit
experiment and then activated with ``mlflow.start_run(run_id=...)``, so the
run that ``mlflow run`` announces in ``MLFLOW_RUN_ID`` never captures the
runs of a sweep by accident.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import logging
import os
import posixpath
import socket
import tempfile
from importlib import metadata
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.models import infer_signature

logger = logging.getLogger(__name__)

# Metric names. Per-epoch curves use a stage prefix with the loss.
METRIC_ARI = "ari"
METRIC_NMI = "nmi"
METRIC_ACC = "acc"
METRIC_SILHOUETTE = "silhouette"
METRIC_RECONSTRUCTION_MSE = "reconstruction_mse"
METRIC_FIT_SECONDS = "fit_seconds"
METRIC_N_SAMPLES = "n_samples"
METRIC_N_FAILED = "n_failed_runs"
METRIC_LATENT_DIM = "latent_dim"
METRIC_MANIFOLD_SECONDS = "manifold_seconds"
METRIC_CLUSTER_SECONDS = "cluster_seconds"
"""Also logged as a metric so that the MLflow UI's charts can put it on an axis."""
CURVE_PREFIXES = ("train_", "val_")

PARAM_SILHOUETTE_MODE = "silhouette_mode"
PARAM_N_CLASSES = "n_classes"
PARAM_CLUSTER_SPACE = "cluster_space"

# Tags.
TAG_ROLE = "aeclust.role"
ROLE_SWEEP, ROLE_RUN, ROLE_COMPARE = "sweep", "run", "compare"
TAG_SWEEP_RUN_ID = "aeclust.sweep_run_id"
TAG_CONFIG_HASH = "aeclust.config_hash"
TAG_MODEL_URI = "aeclust.model_uri"
TAG_CLUSTERER_URI = "aeclust.clusterer_uri"
TAG_INIT_ENCODER = "aeclust.init_encoder_version"
TAG_FEATURES_FROM = "aeclust.features_from"
TAG_TSNE = "aeclust.tsne"
TAG_SILHOUETTE_MISSING = "aeclust.silhouette_missing"
TAG_PROCESS = "aeclust.process"
"""``host:pid`` of the process that runs a run, to find runs whose process died."""
TAG_REUSED_BY = "aeclust.reused_by."
"""Prefix of a tag, followed by a sweep run id, on a FINISHED run that a resumed sweep reuses."""
TAG_N_REUSED = "aeclust.n_reused_runs"
TAG_DATASET = "aeclust.dataset"
TAG_FAILED_CONFIGS = "aeclust.failed_configs"
TAG_FAILURE = "aeclust.failure"
TAG_PROJECT_RUN_ID = "aeclust.project_run_id"
TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
TAG_NOTE = "mlflow.note.content"
"""The description that the MLflow UI shows on a run's page."""

# Artifacts.
ARTIFACT_TSNE = "tsne.png"
ARTIFACT_CONFUSION_PAIRS = "confusion_pairs.csv"
ARTIFACT_CONFUSION_MATRIX = "confusion_matrix.png"
ARTIFACT_RECONSTRUCTIONS = "reconstructions.png"
ARTIFACT_GALLERY = "cluster_gallery.png"
ARTIFACT_REPORT = "report.html"
ARTIFACT_ASSIGNMENTS = "cluster_assignments.csv"
ARTIFACT_DIMENSION_PLOT = "dim_optimization.png"
ARTIFACT_SUMMARY_MD = "summary.md"
ARTIFACT_SUMMARY_JSON = "summary.json"
MODEL_NAME_ENCODER = "encoder"
MODEL_NAME_PCA = "pca"
MODEL_NAME_CLUSTERER = "clusterer"

BEST_ALIAS = "best"
SEARCH_PAGE_SIZE = 1000


_DEFERRED = {"depth": 0, "pending": None}


def interrupt(exc: BaseException) -> None:
    """Raise ``exc`` now, or when the store write in progress has finished.

    The CLI's SIGINT and SIGTERM handlers call this, so an interrupt never
    stops MLflow halfway through a write (which can leave a SQLite store locked).
    """
    if _DEFERRED["depth"] > 0:
        _DEFERRED["pending"] = exc
        return
    raise exc


@contextlib.contextmanager
def interrupts_deferred():
    """Hold interrupts raised through :func:`interrupt` until the block ends, then raise them."""
    _DEFERRED["depth"] += 1
    try:
        yield
    finally:
        _DEFERRED["depth"] -= 1
    pending = _DEFERRED["pending"]
    if _DEFERRED["depth"] == 0 and pending is not None:
        _DEFERRED["pending"] = None
        raise pending


def _uninterrupted(function):
    """Run ``function`` with interrupts deferred (see :func:`interrupts_deferred`)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with interrupts_deferred():
            return function(*args, **kwargs)

    return wrapper


def set_tracking_uri(tracking_uri: str | None) -> str:
    """Point MLflow at ``tracking_uri`` when given, prepare the store, and return the URI in use.

    Without one, MLflow reads ``MLFLOW_TRACKING_URI`` or uses its default
    store (``sqlite:///mlflow.db`` in the working directory for MLflow 3.x).
    """
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    uri = mlflow.get_tracking_uri()
    _prepare_database_store(uri)
    return uri


def current_tracking_uri() -> str:
    """Return the tracking URI in use."""
    return mlflow.get_tracking_uri()


DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def _prepare_database_store(uri: str) -> None:
    """Create or upgrade a database store under a file lock.

    MLflow creates its tables on first use. Two processes that open a new
    store at the same moment both run that migration, and one fails ("duplicate
    column name" on SQLite, a unique violation on PostgreSQL). A lock file lets
    one process of this host at a time do it: beside a SQLite database, and
    in the temporary folder, named by a hash of the URI, for a database server.
    """
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if scheme not in DATABASE_SCHEMES:
        return
    import fcntl
    import hashlib

    # NOTE: the lock serialises processes of one host only. Two hosts that open a new
    # database server store at the same moment can still race in MLflow's migration.
    if uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///"):])
        database.parent.mkdir(parents=True, exist_ok=True)
        lock_path = f"{database}.lock"
    else:
        digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
        lock_path = str(Path(tempfile.gettempdir()) / f"aeclust-store-{digest}.lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def get_or_create_experiment(name: str) -> str:
    """Return the id of experiment ``name``, creating it when missing."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        # The tag makes the MLflow 3 UI open the experiment on its training runs table.
        return client.create_experiment(name, tags={TAG_EXPERIMENT_KIND: "custom_model_development"})
    except mlflow.exceptions.MlflowException:
        # Another process may have created it between the two calls.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def get_experiment_id(name: str) -> str | None:
    """Return the id of experiment ``name``, or None when it does not exist."""
    experiment = MlflowClient().get_experiment_by_name(name)
    return None if experiment is None else experiment.experiment_id


_PROJECT_RUN: dict = {}


def _project_run() -> tuple[str, str] | None:
    """Return (run id, experiment id) of the run ``mlflow run`` started, if any.

    ``mlflow run`` creates a run that records the MLproject parameters as
    given and passes its id in ``MLFLOW_RUN_ID``. aeclust nests its own runs
    under it instead of reusing it, because its runs record the resolved
    values and MLflow does not allow a param to change.
    """
    if "value" not in _PROJECT_RUN:
        run_id = os.environ.pop("MLFLOW_RUN_ID", None)
        _PROJECT_RUN["value"] = None
        if run_id:
            run = MlflowClient().get_run(run_id)
            _PROJECT_RUN["value"] = (run_id, run.info.experiment_id)
    return _PROJECT_RUN["value"]


def active_run_id() -> str | None:
    """Return the id of the active run, or None outside a run."""
    run = mlflow.active_run()
    return None if run is None else run.info.run_id


@contextlib.contextmanager
def active_run(experiment_id: str, *, run_name: str, tags: dict, parent_run_id: str | None = None):
    """Create a run, make it the active run and end it with the right status.

    The run ends FINISHED when the block completes, KILLED on
    ``KeyboardInterrupt`` and FAILED on any other exception. On an exception,
    its type and message go to the ``aeclust.failure`` tag and it is re-raised. Under ``mlflow run``, a top-level run is nested
    under the project run when both are in the same experiment, and tagged
    with its id in any case.

    Yields
    ------
    run_id : str
    """
    client = MlflowClient()
    all_tags = {
        TAG_RUN_NAME: run_name,
        TAG_PROCESS: f"{socket.gethostname()}:{os.getpid()}",
        **{k: str(v) for k, v in tags.items()},
    }
    project = _project_run()
    if parent_run_id is None and project is not None:
        project_run_id, project_experiment_id = project
        all_tags[TAG_PROJECT_RUN_ID] = project_run_id
        if project_experiment_id == experiment_id:
            parent_run_id = project_run_id
    if parent_run_id is not None:
        all_tags[TAG_PARENT] = parent_run_id
    with interrupts_deferred():
        run_id = client.create_run(experiment_id, tags=all_tags, run_name=run_name).info.run_id
        # A parent run stays active while its children run; park it and restore it after.
        outer = mlflow.active_run()
        if outer is not None:
            mlflow.end_run()
        mlflow.start_run(run_id=run_id)
    status = RunStatus.to_string(RunStatus.FINISHED)
    try:
        yield run_id
    except BaseException as exc:
        status = RunStatus.to_string(
            RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
        )
        message = f"{type(exc).__name__}: {exc}"[:4000] if str(exc) else type(exc).__name__
        with interrupts_deferred():
            client.set_tag(run_id, TAG_FAILURE, message)
        raise
    finally:
        with interrupts_deferred():
            mlflow.end_run(status=status)
            if outer is not None:
                mlflow.start_run(run_id=outer.info.run_id)


MAX_PARAM_LENGTH = 6000
"""Maximum param length MLflow 3 stores; longer values go to an artifact."""


@_uninterrupted
def log_params(params: dict) -> None:
    """Log run parameters; None values are logged as the string ``None``.

    A value longer than ``MAX_PARAM_LENGTH`` is saved whole as the artifact
    ``params/<name>.txt`` and the param records a marker that names it.
    """
    values = {}
    for key, value in params.items():
        text = str(value)
        if len(text) > MAX_PARAM_LENGTH:
            artifact = f"params/{key}.txt"
            mlflow.log_text(text, artifact)
            text = f"<{len(text)} characters, in the artifact {artifact}>"
        values[key] = text
    mlflow.log_params(values)


@_uninterrupted
def log_metrics(metrics: dict) -> None:
    """Log scalar metrics of the active run."""
    mlflow.log_metrics({key: float(value) for key, value in metrics.items()})


@_uninterrupted
def log_history(history: dict) -> None:
    """Log per-epoch curves in one batch, with step = epoch (0-based).

    Parameters
    ----------
    history : dict of str to list of float
        Curve name (for example ``train_loss``) to one value per epoch.
    """
    from mlflow.entities import Metric
    import time

    timestamp = int(time.time() * 1000)
    entries = [
        Metric(key=name, value=float(value), timestamp=timestamp, step=epoch)
        for name, values in history.items()
        for epoch, value in enumerate(values)
    ]
    run_id = mlflow.active_run().info.run_id
    for start in range(0, len(entries), 1000):
        MlflowClient().log_batch(run_id, metrics=entries[start:start + 1000])


@_uninterrupted
def set_tags(tags: dict, run_id: str | None = None) -> None:
    """Set tags on ``run_id``, or on the active run."""
    client = MlflowClient()
    run_id = run_id or mlflow.active_run().info.run_id
    for key, value in tags.items():
        client.set_tag(run_id, key, str(value))


@_uninterrupted
def log_png(png: bytes, artifact_file: str, *, run_id: str | None = None) -> None:
    """Log PNG bytes as the image artifact ``artifact_file`` of the active run, or of ``run_id``.

    The figure is rendered by the caller (see ``aeclust.plots.render_png``),
    so this call only stores the file.
    """
    directory, name = posixpath.split(artifact_file)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(png)
        if run_id is None:
            mlflow.log_artifact(str(path), artifact_path=directory or None)
        else:
            MlflowClient().log_artifact(run_id, str(path), artifact_path=directory or None)


def load_sklearn_model(model_uri: str):
    """Load a logged scikit-learn model; raise :class:`ModelLoadError` naming the URI when it fails."""
    import mlflow.sklearn

    return _load_model(mlflow.sklearn.load_model, model_uri)


@_uninterrupted
def log_csv(rows: list[dict], artifact_file: str, *, fieldnames: list[str]) -> None:
    """Log rows of dicts as a CSV artifact with the given columns."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    mlflow.log_text(buffer.getvalue(), artifact_file)


@_uninterrupted
def log_files(paths) -> None:
    """Log local files as artifacts at the root of the active run."""
    for path in paths:
        mlflow.log_artifact(str(path))


def _pip_requirements(*packages: str) -> list[str]:
    return [f"{package}=={metadata.version(package)}" for package in packages]


@_uninterrupted
def log_encoder(encoder, X_example) -> str:
    """Log a Keras encoder as an MLflow model in Keras 3 format and return its URI.

    The signature comes from ``infer_signature`` on a few rows, and the pip
    requirements are given explicitly, because requirement inference costs
    seconds per model.
    """
    import mlflow.keras

    example = X_example[:5]
    signature = infer_signature(example, encoder.predict(example, verbose=0))
    info = mlflow.keras.log_model(
        encoder,
        name=MODEL_NAME_ENCODER,
        signature=signature,
        pip_requirements=_pip_requirements("mlflow", "tensorflow", "keras", "numpy"),
    )
    set_tags({TAG_MODEL_URI: info.model_uri})
    return info.model_uri


@_uninterrupted
def log_clusterer(model_file, *, encoder, clusterer_folder, code_path, extra_packages=()) -> str:
    """Log the pyfunc clusterer of an autoencoder run and return its model URI.

    Parameters
    ----------
    model_file : Path
        The Python file that defines the clusterer model (MLflow models from code).
    encoder : keras.Model
        Saved in Keras 3 format as the ``encoder`` artifact.
    clusterer_folder : Path
        Folder with the centroids and preprocessing rules (the ``clusterer`` artifact).
    code_path : Path
        The aeclust package folder, copied into the model so it loads without aeclust installed.
    extra_packages : sequence of str, default=()
        Further packages the clusterer needs, e.g. ``umap-learn`` and
        ``scikit-learn`` for a UMAP step or a Gaussian mixture.
    """
    import mlflow.pyfunc

    with tempfile.TemporaryDirectory() as tmp:
        encoder_file = Path(tmp) / "encoder.keras"
        encoder.save(encoder_file)
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME_CLUSTERER,
            python_model=str(model_file),
            artifacts={"encoder": str(encoder_file), "clusterer": str(clusterer_folder)},
            code_paths=[str(code_path)],
            pip_requirements=_pip_requirements(
                "mlflow", "tensorflow", "keras", "numpy", "pandas", *extra_packages
            ),
        )
    set_tags({TAG_CLUSTERER_URI: info.model_uri})
    return info.model_uri


@_uninterrupted
def log_pca(pca, X_example) -> str:
    """Log a fitted scikit-learn PCA with the sklearn flavour and return its URI."""
    import mlflow.sklearn

    example = X_example[:5]
    info = mlflow.sklearn.log_model(
        pca,
        name=MODEL_NAME_PCA,
        pyfunc_predict_fn="transform",
        signature=infer_signature(example, pca.transform(example)),
        pip_requirements=_pip_requirements("mlflow", "scikit-learn", "numpy"),
    )
    set_tags({TAG_MODEL_URI: info.model_uri})
    return info.model_uri


def _run_record(run) -> dict:
    return {
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "start_time": run.info.start_time,
        "params": dict(run.data.params),
        "metrics": dict(run.data.metrics),
        "tags": dict(run.data.tags),
    }


def search_runs(experiment_id: str, filter_string: str, order_by=None) -> list[dict]:
    """Return every run matching ``filter_string``, following all result pages."""
    client = MlflowClient()
    records, page_token = [], None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            max_results=SEARCH_PAGE_SIZE,
            order_by=order_by,
            page_token=page_token,
        )
        records.extend(_run_record(run) for run in page)
        page_token = page.token
        if not page_token:
            return records


def child_runs(experiment_id: str, sweep_run_id: str) -> list[dict]:
    """Return every configuration run of the sweep ``sweep_run_id``, whatever its status.

    Runs of earlier sweeps that a resumed sweep reused are included.
    """
    own = search_runs(
        experiment_id,
        f"tags.`{TAG_SWEEP_RUN_ID}` = '{sweep_run_id}' and tags.`{TAG_ROLE}` = '{ROLE_RUN}'",
    )
    reused = search_runs(experiment_id, f"tags.`{TAG_REUSED_BY}{sweep_run_id}` = 'true'")
    return own + reused


def runs_by_config_hash(experiment_id: str, config_hashes) -> dict[str, list[dict]]:
    """Return the configuration runs of the experiment grouped by their config hash.

    Only hashes in ``config_hashes`` are kept.
    """
    requested = set(config_hashes)
    grouped: dict[str, list[dict]] = {}
    for run in search_runs(experiment_id, f"tags.`{TAG_ROLE}` = '{ROLE_RUN}'"):
        config_hash = run["tags"].get(TAG_CONFIG_HASH)
        if config_hash in requested:
            grouped.setdefault(config_hash, []).append(run)
    return grouped


@_uninterrupted
def mark_failed(run_id: str, reason: str) -> None:
    """End a run as FAILED with ``reason`` in its ``aeclust.failure`` tag."""
    client = MlflowClient()
    client.set_tag(run_id, TAG_FAILURE, reason)
    client.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))


def latest_sweep(experiment_id: str) -> dict | None:
    """Return the most recently started sweep run of the experiment, or None."""
    client = MlflowClient()
    page = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_ROLE}` = '{ROLE_SWEEP}'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return _run_record(page[0]) if page else None


def get_run(run_id: str) -> dict:
    """Return one run as a record of its params, metrics and tags."""
    return _run_record(MlflowClient().get_run(run_id))


def read_artifact_bytes(run_id: str, artifact_path: str) -> bytes | None:
    """Return the content of a run's artifact, or None when it is missing."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=artifact_path, dst_path=tmp
            )
        except (OSError, mlflow.exceptions.MlflowException):
            return None
        return Path(local).read_bytes()


def read_artifact_text(run_id: str, artifact_path: str) -> str | None:
    """Return the UTF-8 text of a run's artifact, or None when it is missing."""
    content = read_artifact_bytes(run_id, artifact_path)
    return None if content is None else content.decode("utf-8")


class ModelLoadError(ValueError):
    """A model URI that does not resolve to a loadable model."""


def load_pyfunc(model_uri: str):
    """Load an MLflow model as pyfunc; raise :class:`ModelLoadError` naming the URI when it fails."""
    import mlflow.pyfunc

    return _load_model(mlflow.pyfunc.load_model, model_uri)


def load_keras_model(model_uri: str):
    """Load a logged Keras model; raise :class:`ModelLoadError` naming the URI when it fails."""
    import mlflow.keras

    return _load_model(mlflow.keras.load_model, model_uri)


def _load_model(loader, model_uri: str):
    try:
        return loader(model_uri)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise ModelLoadError(
            f"model_uri={model_uri!r} could not be loaded ({str(exc)[:200]}): check the name, "
            "version or alias and the --tracking-uri."
        ) from exc


def describe_model_source(model_uri: str) -> str:
    """Name the registered version behind ``models:/name@alias`` or ``models:/name/version``.

    Other URIs are returned unchanged.
    """
    if not model_uri.startswith("models:/"):
        return model_uri
    path = model_uri[len("models:/"):]
    client = MlflowClient()
    if "@" in path:
        name, alias = path.split("@", 1)
        return f"{name}/{client.get_model_version_by_alias(name, alias).version}"
    return path


def alias_holder(name: str, alias: str = BEST_ALIAS) -> dict | None:
    """Return the version and tags of the model version that ``name@alias`` points at, or None."""
    try:
        version = MlflowClient().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None
    return {"version": str(version.version), "tags": dict(version.tags)}


@_uninterrupted
def register_model(model_uri: str, name: str, *, tags: dict, description: str) -> str:
    """Register ``model_uri`` as a new version of ``name``, point the alias ``best`` at it.

    Returns
    -------
    version : str
        The new model version.
    """
    client = MlflowClient()
    version = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    client.update_model_version(name, version.version, description=description)
    client.set_registered_model_alias(name, BEST_ALIAS, version.version)
    logger.info("Registered %s version %s with alias @%s.", name, version.version, BEST_ALIAS)
    return str(version.version)

