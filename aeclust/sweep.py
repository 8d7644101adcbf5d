"""A sweep: every (method, latent_dim, seed) run nested under one parent run."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from aeclust import models, pipeline, progress, tracking
from aeclust.config import ConfigError, RunConfig, SweepConfig

logger = logging.getLogger(__name__)


class SweepFailedError(RuntimeError):
    """One or more runs of a sweep failed; the others were recorded."""

    def __init__(self, failed: list[str], sweep_run_id: str):
        self.failed = failed
        self.sweep_run_id = sweep_run_id
        super().__init__(
            f"{len(failed)} run(s) of sweep {sweep_run_id} failed: {', '.join(failed)}. "
            "Their errors are in each run's aeclust.failure tag."
        )


@dataclass(frozen=True)
class SweepResult:
    """The parent run and the finished runs of a sweep."""

    sweep_run_id: str
    results: tuple
    reused: dict = dataclasses.field(default_factory=dict)


def plan_runs(sweep: SweepConfig, samples: dict) -> list[RunConfig]:
    """Expand the sweep and check every config against its sample before any run starts.

    A dim that a method cannot give on this data (PCA beyond the number of
    pixels) is dropped with a warning when the dims are the default list.
    When the user listed the dims, it is an error.
    """
    planned = []
    for config in sweep.run_configs():
        try:
            pipeline.check_fits(config, samples[config.seed])
        except ConfigError as exc:
            if sweep.latent_dims_given or "latent_dim" not in str(exc):
                raise
            logger.warning("Skipping %s: %s", pipeline.run_name(config), exc)
            continue
        planned.append(config)
    return planned


def describe(sweep: SweepConfig, dataset: str, n_runs: int) -> str:
    """Describe the sweep in Markdown for its parent run's page in the MLflow UI."""
    sample = sweep.base.data.sample_size or "all"
    return (
        f"aeclust sweep on **{dataset}** (split {sweep.base.data.split}, {sample} images): "
        f"{n_runs} runs of methods {', '.join(sweep.methods)} at latent_dim "
        f"{', '.join(map(str, sweep.latent_dims))} with seeds {', '.join(map(str, sweep.seeds))}. "
        "Each child run clusters its features (K-means unless the method adds +gmm, after a UMAP "
        "step when it adds +umap) and logs silhouette, ARI, NMI and ACC. "
        "Run `aeclust compare` to choose the best latent_dim and write report.html."
    )


def process_is_gone(process_tag: str | None) -> bool:
    """Tell whether the ``host:pid`` of a RUNNING run names a process of this host that has ended.

    A run of another host, or one without the tag, is never called gone,
    because this process cannot see it.
    """
    # NOTE: a run whose process died on another host stays RUNNING; only local pids are checked.
    if not process_tag or ":" not in process_tag:
        return False
    host, pid = process_tag.rsplit(":", 1)
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_orphaned_runs(experiment_id: str) -> int:
    """Mark FAILED every RUNNING run of the experiment whose process on this host has ended.

    Returns the number of runs marked.
    """
    marked = 0
    for run in tracking.search_runs(experiment_id, "attributes.status = 'RUNNING'"):
        process = run["tags"].get(tracking.TAG_PROCESS)
        if process_is_gone(process):
            reason = f"process {process} ended while the run was RUNNING"
            logger.warning("Marking run %s FAILED: %s.", run["run_id"], reason)
            tracking.mark_failed(run["run_id"], reason)
            marked += 1
    return marked


def split_done(planned: list[RunConfig], experiment_id: str) -> tuple[list[RunConfig], dict]:
    """Separate configurations that already have a FINISHED run from those still to run.

    Returns
    -------
    to_run : list of RunConfig
        Configurations without a FINISHED run.
    reused : dict of str to str
        Run name to the id of the FINISHED run that stands for it.
    """
    hashes = {config.config_hash(): config for config in planned}
    existing = tracking.runs_by_config_hash(experiment_id, hashes)
    to_run, reused = [], {}
    for config_hash, config in hashes.items():
        runs = existing.get(config_hash, [])
        finished = sorted(
            (run for run in runs if run["status"] == "FINISHED"), key=lambda run: run["start_time"]
        )
        if finished:
            reused[pipeline.run_name(config)] = finished[-1]["run_id"]
        else:
            to_run.append(config)
    return to_run, reused


def draw_best_tsne(results, samples, *, tsne_samples: int) -> None:
    """Draw the t-SNE map of the best run of each method among ``results``.

    The best run has the highest ARI, or the highest silhouette when the
    runs have no ARI. A map that fails is logged as a warning.
    """
    best = {}
    for result in results:
        metric = "ari" if "ari" in result.metrics else "silhouette"
        score = result.metrics.get(metric, float("-inf"))
        method = result.config.method
        if method not in best or score > best[method][0]:
            best[method] = (score, result)
    for _, result in best.values():
        start = time.perf_counter()
        try:
            pipeline.draw_tsne_later(result, samples[result.config.seed], tsne_samples=tsne_samples)
        except Exception:  # A failed figure leaves the sweep and its runs as they are.
            logger.exception("The t-SNE map of run %s failed; the sweep goes on.", result.run_id)
            continue
        logger.info("Drew the t-SNE map of %s, the best %s run, in %.1f s.",
                    pipeline.run_name(result.config), result.config.method, time.perf_counter() - start)


def _init_worker(tracking_uri: str, threads: int) -> None:
    """Set up a worker process: its tracking store, its share of CPU threads, its signals."""
    import signal

    from threadpoolctl import threadpool_limits

    from aeclust.config import Interrupted

    tracking.set_tracking_uri(tracking_uri)
    # Kept for the life of the worker: BLAS and OpenMP pools use at most this many threads.
    _WORKER_STATE["blas_limits"] = threadpool_limits(limits=threads)
    models.limit_threads(threads)

    def interrupt(signum, frame):
        tracking.interrupt(Interrupted(signal.Signals(signum).name))

    signal.signal(signal.SIGTERM, interrupt)


_WORKER_STATE: dict = {}


def _run_in_worker(task):
    """Run one configuration in a worker; return (name, result or None, error text or None)."""
    config, image_set, experiment_id, parent_run_id = task
    name = pipeline.run_name(config)
    try:
        result = pipeline.execute_run(
            config, image_set, experiment_id=experiment_id, parent_run_id=parent_run_id
        )
    except Exception as exc:
        logger.exception("Run %s failed; the sweep goes on.", name)
        return name, None, f"{type(exc).__name__}: {exc}"
    return name, result, None


def absolute_store_uri(uri: str) -> str:
    """Make a SQLite or file store URI absolute, so workers with another working folder find it.

    Examples
    --------
    >>> absolute_store_uri("postgresql://host/db")
    'postgresql://host/db'
    """
    for prefix in ("sqlite:///", "file://"):
        if uri.startswith(prefix):
            path = uri[len(prefix):]
            if path and not path.startswith("/"):
                return prefix + str(Path(path).resolve())
    if "://" not in uri:
        return str(Path(uri).resolve())
    return uri


def _run_on_ray(config, image_set, experiment_id, parent_run_id, tracking_uri: str, threads: int):
    """Run one configuration as a Ray task, logging to ``tracking_uri``.

    Ray resolves ``image_set`` from the object store because it is a
    top-level argument; a reference inside a tuple would arrive unresolved.
    """
    if _WORKER_STATE.get("tracking_uri") != tracking_uri:
        tracking.set_tracking_uri(tracking_uri)
        _WORKER_STATE["tracking_uri"] = tracking_uri
    if "threads" not in _WORKER_STATE:
        from threadpoolctl import threadpool_limits

        # A Ray worker process runs many tasks; its thread limits are set by the first one.
        _WORKER_STATE["blas_limits"] = threadpool_limits(limits=threads)
        try:
            models.limit_threads(threads)
        except RuntimeError:  # TensorFlow started before this task, with its own thread pools.
            logger.debug("TensorFlow threads were already fixed in this Ray worker.")
        _WORKER_STATE["threads"] = threads
    return _run_in_worker((config, image_set, experiment_id, parent_run_id))


RAY_CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the Ray cluster's port before the sweep is rejected."""


def check_ray(address: str | None, *, jobs: int) -> None:
    """Raise :class:`ConfigError` unless a Ray sweep can start: ray installed, cluster reachable.

    Called before any data is loaded or any run is created. Ray itself
    retries an unreachable address without end, so the cluster's port is
    tried here first, once, with a timeout.
    """
    import socket

    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError(
            "executor=ray needs the ray package: pip install 'aeclust[ray]' on this machine and "
            "on every node of the cluster."
        ) from None
    if not address:
        raise ConfigError(
            "executor=ray needs the address of a running Ray cluster: pass --ray-address HOST:PORT "
            "or set RAY_ADDRESS (start one with: ray start --head)."
        )
    if jobs > 1:
        raise ConfigError(
            f"jobs={jobs} does not apply to executor=ray: Ray places the tasks, so drop --jobs and "
            "set the CPUs of each task with --ray-cpus-per-task."
        )
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"ray_address={address!r} is invalid: give HOST:PORT, e.g. 10.0.0.5:6379.")
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ConfigError(
            f"ray_address={address!r} is not reachable ({exc}): check that the Ray head runs "
            "(ray status) and that this machine can reach its port."
        ) from None


def _run_configs_ray(planned, samples, *, experiment_id, sweep_run_id, address, cpus_per_task):
    """Yield (name, result or None) for each configuration, run as Ray tasks of a running cluster."""
    import ray

    uri = absolute_store_uri(tracking.current_tracking_uri())
    if not address.startswith(("127.0.0.1", "localhost", "local")) and (
        uri.startswith(("sqlite:", "file:", "/"))
    ):
        logger.warning(
            "The tracking store %s is a local file; Ray tasks on other machines cannot log to it. "
            "Use a tracking server (--tracking-uri http://... or postgresql://...).", uri,
        )
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False,
             configure_logging=False)
    logger.info("Submitting %d configurations to the Ray cluster at %s, %d CPU(s) per task.",
                len(planned), address, cpus_per_task)
    remote = ray.remote(num_cpus=cpus_per_task, max_retries=0)(_run_on_ray)
    sample_refs = {seed: ray.put(sample) for seed, sample in samples.items()}
    pending = {
        remote.remote(config, sample_refs[config.seed], experiment_id, sweep_run_id, uri, cpus_per_task):
            pipeline.run_name(config)
        for config in planned
    }
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            name = pending.pop(done[0])
            try:
                _, result, error = ray.get(done[0])
            except ray.exceptions.RayError as exc:
                result, error = None, str(exc)
            if result is None:
                logger.error("Run %s failed on Ray: %s", name, error)
            yield name, result
    except BaseException:
        # Cancelling raises KeyboardInterrupt in each task, so its open run ends KILLED.
        # NOTE: tested only on an in-process stand-in for Ray, not on a real cluster.
        for ref in pending:
            ray.cancel(ref)
        raise


FRESH_PROCESS_BYTES = 256 * 2**20
"""Size of a sample as float32 pixels from which ``--jobs 1`` runs each configuration in a new process."""


def _float_bytes(samples: dict) -> int:
    """Return the size of the largest sample as float32 pixels."""
    return max((image_set.images.size * 4 for image_set in samples.values()), default=0)


def _run_configs(planned, samples, *, experiment_id, sweep_run_id, jobs, executor="local",
                 ray_address=None, cpus_per_task=1):
    """Yield (name, result or None) for each configuration, in 1 or ``jobs`` processes or on Ray.

    With ``jobs=1`` the configurations run in this process, unless the
    sample takes at least :data:`FRESH_PROCESS_BYTES` as float32 pixels:
    then each runs in a new worker process, which gives all its memory back
    when it ends.
    """
    if executor == "ray":
        yield from _run_configs_ray(
            planned, samples, experiment_id=experiment_id, sweep_run_id=sweep_run_id,
            address=ray_address, cpus_per_task=cpus_per_task,
        )
        return
    sample_bytes = _float_bytes(samples)
    fresh_processes = jobs <= 1 and sample_bytes >= FRESH_PROCESS_BYTES
    if jobs <= 1 and not fresh_processes:
        for config in planned:
            name, result, _ = _run_in_worker((config, samples[config.seed], experiment_id, sweep_run_id))
            yield name, result
        return

    import multiprocessing

    jobs = max(1, jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    if fresh_processes:
        # A process keeps part of each autoencoder run's memory (see pipeline._return_freed_memory).
        logger.info(
            "Running each of %d configurations in a new process: the sample takes %d MiB as "
            "float32 pixels, and a new process gives its memory back after every run.",
            len(planned), sample_bytes // 2**20,
        )
    else:
        logger.info("Running %d configurations in %d processes of %d thread(s) each.", len(planned), jobs, threads)
    tasks = [(config, samples[config.seed], experiment_id, sweep_run_id) for config in planned]
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(
        processes=jobs, initializer=_init_worker,
        initargs=(tracking.current_tracking_uri(), threads),
        maxtasksperchild=1 if fresh_processes else None,
    )
    try:
        for name, result, _ in pool.imap_unordered(_run_in_worker, tasks):
            yield name, result
        pool.close()
    except BaseException:
        # Workers stop now; their open runs end KILLED, or FAILED on the next resume.
        pool.terminate()
        raise
    finally:
        pool.join()


def run_sweep(
    sweep: SweepConfig, *, experiment: str, resume: bool = True, jobs: int = 1,
    executor: str = "local", ray_address: str | None = None, cpus_per_task: int = 1,
) -> SweepResult:
    """Train and score every configuration of ``sweep`` as a nested MLflow run.

    The data set is loaded once and sampled once per seed. A run that fails
    is marked FAILED and the sweep goes on. With ``resume``, a configuration
    that already has a FINISHED run in the experiment (same config hash) is
    not run again: that run is tagged as reused by the new sweep, and compare
    reads it as one of the sweep's runs.

    With ``jobs`` above 1, configurations run in that many worker processes,
    each limited to its share of the CPU threads. With ``executor="ray"``,
    each configuration is a Ray task of the running cluster at
    ``ray_address`` that asks for ``cpus_per_task`` CPUs and logs to the
    same tracking store; resume and run statuses work as they do locally.

    Raises
    ------
    ConfigError
        Before any run is created, when a configuration cannot run.
    SweepFailedError
        After all runs, when at least one failed; the parent run is then FAILED.
    """
    if executor == "ray":
        check_ray(ray_address, jobs=jobs)
    base, image_set = pipeline.load_data(sweep.base)
    sweep = dataclasses.replace(sweep, base=base)
    samples = {
        seed: pipeline.draw_sample(dataclasses.replace(base, seed=seed), image_set)
        for seed in sweep.seeds
    }
    planned = plan_runs(sweep, samples)
    experiment_id = tracking.get_or_create_experiment(experiment)
    reused = {}
    # Runs left RUNNING by a killed process would otherwise stay RUNNING forever.
    fail_orphaned_runs(experiment_id)
    if resume:
        planned, reused = split_done(planned, experiment_id)
        if reused:
            logger.info(
                "Resuming: %d configuration(s) already have a FINISHED run and are reused; "
                "%d to run. Pass --no-resume to run them all again.", len(reused), len(planned),
            )

    parent_tags = {
        tracking.TAG_ROLE: tracking.ROLE_SWEEP,
        tracking.TAG_DATASET: image_set.name,
        tracking.TAG_NOTE: describe(sweep, image_set.name, len(planned)),
    }
    results, failed = [], []
    with tracking.active_run(
        experiment_id, run_name=f"sweep-{image_set.name}", tags=parent_tags
    ) as sweep_run_id:
        params = sweep.base.params()
        for key in ("method", "extractor", "manifold", "clusterer", "latent_dim", "seed"):
            params.pop(key)
        # The base config's method decides which step settings its params show; the sweep shows all.
        params.update(
            learning_rate=base.learning_rate,
            umap_neighbors=base.umap_neighbors,
            umap_dim=base.umap_dim,
            gmm_n_init=base.gmm_n_init,
            tsne_runs=sweep.tsne_runs if base.tsne else "none",
            executor=executor,
            methods=",".join(sweep.methods),
            latent_dims=",".join(str(dim) for dim in sweep.latent_dims),
            seeds=",".join(str(seed) for seed in sweep.seeds),
            n_runs=len(planned) + len(reused),
        )
        tracking.log_params(params)
        tracking.set_tags({tracking.TAG_N_REUSED: len(reused)})
        for run_id in reused.values():
            tracking.set_tags({f"{tracking.TAG_REUSED_BY}{sweep_run_id}": "true"}, run_id=run_id)

        start = time.perf_counter()
        runs_progress = progress.Progress(len(planned), "sweep runs")
        outcomes = _run_configs(
            planned, samples, experiment_id=experiment_id, sweep_run_id=sweep_run_id, jobs=jobs,
            executor=executor, ray_address=ray_address, cpus_per_task=cpus_per_task,
        )
        for name, result in outcomes:
            if result is None:
                failed.append(name)
                runs_progress.update(f"{name} FAILED")
                continue
            results.append(result)
            runs_progress.update(name)
        runs_progress.close()
        if sweep.base.tsne and sweep.tsne_runs == "best":
            draw_best_tsne(results, samples, tsne_samples=sweep.base.tsne_samples)

        tracking.log_metrics({tracking.METRIC_N_FAILED: len(failed)})
        if failed:
            tracking.set_tags({tracking.TAG_FAILED_CONFIGS: ",".join(failed)})
            raise SweepFailedError(failed, sweep_run_id)

    logger.info(
        "Sweep %s finished %d runs in %.0f s.", sweep_run_id, len(results),
        time.perf_counter() - start,
    )
    return SweepResult(sweep_run_id=sweep_run_id, results=tuple(results), reused=reused)
