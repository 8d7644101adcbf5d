"""Read a sweep back from the tracking store, choose the best latent dimension and report.

The choosing and summarising functions work on plain run records (dicts of
params, metrics and tags), so they are testable without a store.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aeclust import plots, report, tracking
from aeclust.config import AUTOENCODERS, CompareConfig, parse_method

logger = logging.getLogger(__name__)

SCORE_METRICS = ("silhouette", "ari", "nmi", "acc")
TOP_CONFUSED_PAIRS = 10
CONFUSION_FIELDS = ("scope", "class_a", "class_b", "count", "total", "rate")
REPORT_ARTIFACTS = (
    tracking.ARTIFACT_TSNE,
    tracking.ARTIFACT_CONFUSION_MATRIX,
    tracking.ARTIFACT_RECONSTRUCTIONS,
    tracking.ARTIFACT_GALLERY,
)


class CompareError(RuntimeError):
    """The sweep cannot be compared (not found, or no valid runs)."""


@dataclass(frozen=True)
class CompareResult:
    """Outputs of a compare: its run, the summary, the output folder and the registered versions."""

    compare_run_id: str
    summary: dict
    output_dir: Path
    registered_versions: dict


def is_finite(value) -> bool:
    """Tell whether ``value`` is a real, finite number."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def choose_metric(runs: list[dict], requested: str | None) -> str:
    """Return the metric to choose by: the requested one, else ``ari``, else ``silhouette``.

    ``silhouette`` is the fallback when no run has an ARI, which happens only
    when there were no labels to score against.
    """
    if requested is not None:
        return requested
    if any(tracking.METRIC_ARI in run["metrics"] for run in runs):
        return tracking.METRIC_ARI
    return tracking.METRIC_SILHOUETTE


def valid_runs(runs: list[dict], metric: str) -> tuple[list[dict], dict]:
    """Keep FINISHED runs with a finite ``metric``; count the others by reason."""
    valid, excluded = [], {}
    for run in runs:
        if run["status"] != "FINISHED":
            reason = f"status {run['status']}"
        elif not is_finite(run["metrics"].get(metric)):
            reason = f"{metric} missing or not finite"
        else:
            valid.append(run)
            continue
        excluded[reason] = excluded.get(reason, 0) + 1
    return valid, excluded


def latest_per_configuration(runs: list[dict]) -> list[dict]:
    """Keep the latest run of each (method, latent_dim, seed), so duplicates count once."""
    latest: dict[tuple, dict] = {}
    for run in runs:
        params = run["params"]
        key = (params["method"], params["latent_dim"], params["seed"])
        if key not in latest or run["start_time"] > latest[key]["start_time"]:
            latest[key] = run
    return list(latest.values())


def summarise_table(runs: list[dict]) -> list[dict]:
    """Average each score over seeds, one row per (method, latent_dim).

    Returns
    -------
    table : list of dict
        Rows sorted by method then latent_dim, with ``method``, ``latent_dim``,
        ``n_seeds``, and for each score its mean under the score's name and
        its standard deviation (ddof=0) under ``<score>_std``.
    """
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        key = (run["params"]["method"], int(run["params"]["latent_dim"]))
        groups.setdefault(key, []).append(run)

    table = []
    for (method, latent_dim), group in sorted(groups.items()):
        row = {"method": method, "latent_dim": latent_dim, "n_seeds": len(group)}
        for metric in SCORE_METRICS:
            values = [run["metrics"][metric] for run in group if is_finite(run["metrics"].get(metric))]
            row[metric] = float(np.mean(values)) if values else float("nan")
            row[f"{metric}_std"] = float(np.std(values)) if values else float("nan")
        table.append(row)
    return table


def best_dims(table: list[dict], metric: str) -> dict[str, dict]:
    """Choose the best row per method by the mean of ``metric``; ties go to the smaller dim."""
    best = {}
    for row in table:
        if not is_finite(row[metric]):
            continue
        current = best.get(row["method"])
        better = current is None or row[metric] > current[metric] or (
            row[metric] == current[metric] and row["latent_dim"] < current["latent_dim"]
        )
        if better:
            best[row["method"]] = row
    return best


def best_run(runs: list[dict], *, method: str, latent_dim: int, metric: str) -> dict:
    """Return the run with the highest ``metric`` at (method, latent_dim); ties go to the lower seed."""
    candidates = [
        run for run in runs
        if run["params"]["method"] == method and int(run["params"]["latent_dim"]) == latent_dim
    ]
    return max(candidates, key=lambda run: (run["metrics"][metric], -int(run["params"]["seed"])))


def read_confusion_pairs(text: str | None, limit: int = TOP_CONFUSED_PAIRS) -> dict:
    """Parse a run's ``confusion_pairs.csv``.

    Returns
    -------
    confusions : dict
        ``classes``: the ``limit`` classes most often clustered as another
        class; ``pairs``: the unordered pairs that most often share a
        cluster. Each row has ``class_a``, ``class_b``, ``count``, ``total``
        and ``rate``.
    """
    confusions = {"classes": [], "pairs": []}
    if not text:
        return confusions
    reader = csv.DictReader(io.StringIO(text))
    if not set(CONFUSION_FIELDS) <= set(reader.fieldnames or ()):
        logger.warning(
            "Skipping a confusion_pairs.csv with columns %s; expected %s.",
            reader.fieldnames, ", ".join(CONFUSION_FIELDS),
        )
        return confusions
    for row in reader:
        if not row["class_b"]:
            continue
        parsed = {
            "class_a": row["class_a"],
            "class_b": row["class_b"],
            "count": int(row["count"]),
            "total": int(row["total"]),
            "rate": float(row["rate"]),
        }
        confusions["classes" if row["scope"] == "class" else "pairs"].append(parsed)
    confusions["classes"].sort(key=lambda row: -row["rate"])
    confusions["classes"] = confusions["classes"][:limit]
    return confusions


def paired_test(runs: list[dict], *, latent_dim: int, metric: str) -> dict:
    """Test autoencoder against PCA at ``latent_dim`` with a paired t-test across seeds.

    Runs are paired by seed. With fewer than 2 pairs no test is possible.

    Returns
    -------
    test : dict
        ``n`` (pairs), ``mean_difference`` (ae - pca), and when a test was
        possible ``statistic`` and ``p_value`` of ``scipy.stats.ttest_rel``.
    """
    by_seed = {"ae": {}, "pca": {}}
    for run in runs:
        method = run["params"]["method"]
        if method in by_seed and int(run["params"]["latent_dim"]) == latent_dim:
            by_seed[method][run["params"]["seed"]] = run["metrics"][metric]
    seeds = sorted(set(by_seed["ae"]) & set(by_seed["pca"]))
    ae = np.array([by_seed["ae"][seed] for seed in seeds])
    pca = np.array([by_seed["pca"][seed] for seed in seeds])
    test = {
        "test": "paired t-test (scipy.stats.ttest_rel), ae against pca, paired by seed",
        "latent_dim": latent_dim,
        "n": len(seeds),
        "mean_difference": float(np.mean(ae - pca)) if seeds else None,
        "statistic": None,
        "p_value": None,
    }
    if len(seeds) >= 2 and np.ptp(ae - pca) > 0:
        from scipy import stats

        result = stats.ttest_rel(ae, pca)
        test["statistic"] = float(result.statistic)
        test["p_value"] = float(result.pvalue)
    return test


def build_summary(runs: list[dict], *, metric: str, sweep_run: dict, excluded: dict) -> dict:
    """Build the summary of a sweep: table, best dims, AE against PCA, confused pairs."""
    table = summarise_table(runs)
    best = best_dims(table, metric)
    best_runs = {
        method: best_run(runs, method=method, latent_dim=row["latent_dim"], metric=metric)
        for method, row in best.items()
    }

    comparison = None
    if "ae" in best:
        dim = best["ae"]["latent_dim"]
        pca_row = next(
            (row for row in table if row["method"] == "pca" and row["latent_dim"] == dim), None
        )
        comparison = {
            "latent_dim": dim,
            "ae": best["ae"][metric],
            "pca": pca_row[metric] if pca_row else None,
            "difference": best["ae"][metric] - pca_row[metric] if pca_row else None,
            "test": paired_test(runs, latent_dim=dim, metric=metric),
        }

    # The grid comes from the sweep run; the resolved per-run values from a run of it.
    params = {**runs[0]["params"], **sweep_run["params"]}
    params["n_clusters"] = runs[0]["params"].get("n_clusters")
    params["n_samples"] = int(runs[0]["metrics"].get("n_samples", 0))
    return {
        "dataset": sweep_run["tags"].get(tracking.TAG_DATASET, params.get("dataset")),
        "sweep_run_id": sweep_run["run_id"],
        "metric": metric,
        "setup": {
            key: params.get(key)
            for key in ("dataset", "split", "n_samples", "methods", "latent_dims", "seeds", "epochs",
                        "batch_size", "n_clusters", "n_init")
        },
        "versions": package_versions(),
        "n_runs": len(runs),
        "excluded_runs": excluded,
        "table": table,
        "best": {
            method: {
                "latent_dim": row["latent_dim"],
                metric: row[metric],
                "run_id": best_runs[method]["run_id"],
                "seed": best_runs[method]["params"].get("seed"),
                "run_metrics": best_runs[method]["metrics"],
                "model_uri": best_runs[method]["tags"].get(tracking.TAG_MODEL_URI),
                "clusterer_uri": best_runs[method]["tags"].get(tracking.TAG_CLUSTERER_URI),
            }
            for method, row in best.items()
        },
        "ae_vs_pca": comparison,
        "confused_pairs": {
            method: read_confusion_pairs(
                tracking.read_artifact_text(run["run_id"], tracking.ARTIFACT_CONFUSION_PAIRS)
            )
            for method, run in best_runs.items()
        },
    }


def package_versions() -> dict:
    """Return the installed versions of aeclust and the libraries its results depend on."""
    from importlib import metadata

    from aeclust import __version__

    # The package's own version, not the one recorded when an editable install was made.
    versions = {"aeclust": __version__}
    for package in ("tensorflow", "keras", "scikit-learn", "numpy", "mlflow", "openTSNE", "umap-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def find_sweep(experiment: str, sweep_run_id: str | None) -> tuple[str, dict]:
    """Return the experiment id and the sweep run to compare.

    Raises
    ------
    CompareError
        When the experiment or the sweep does not exist.
    """
    experiment_id = tracking.get_experiment_id(experiment)
    if experiment_id is None:
        raise CompareError(
            f"experiment={experiment!r} was not found in the tracking store: run "
            "`aeclust sweep` first, or pass --experiment and --tracking-uri of an existing sweep."
        )
    if sweep_run_id is None:
        sweep = tracking.latest_sweep(experiment_id)
        if sweep is None:
            raise CompareError(
                f"experiment={experiment!r} has no sweep run: run `aeclust sweep` first."
            )
        return experiment_id, sweep
    try:
        sweep = tracking.get_run(sweep_run_id)
    except Exception as exc:  # MLflow raises MlflowException subclasses for unknown ids.
        raise CompareError(
            f"sweep_run_id={sweep_run_id!r} was not found in the tracking store: pass the id of "
            "a sweep run, or leave --sweep-run-id out to use the latest sweep."
        ) from exc
    return sweep["experiment_id"], sweep


def run_compare(config: CompareConfig) -> CompareResult:
    """Compare the runs of a sweep, write and log the summary, and register the best encoder."""
    experiment_id, sweep = find_sweep(config.experiment, config.sweep_run_id)
    runs = tracking.child_runs(experiment_id, sweep["run_id"])
    metric = choose_metric(runs, config.metric)
    valid, excluded = valid_runs(runs, metric)
    n_valid = len(valid)
    valid = latest_per_configuration(valid)
    if len(valid) < n_valid:
        excluded["older duplicate of a configuration"] = n_valid - len(valid)
    if excluded:
        logger.warning(
            "Excluded %d of %d runs: %s.", sum(excluded.values()), len(runs),
            ", ".join(f"{count} with {reason}" for reason, count in excluded.items()),
        )
    if not valid:
        raise CompareError(
            f"sweep {sweep['run_id']} has no FINISHED run with a finite {metric}: "
            "run the sweep again or choose another --metric."
        )

    summary = build_summary(valid, metric=metric, sweep_run=sweep, excluded=excluded)
    default_dir = Path("aeclust-output") / (
        config.experiment if config.language == "en" else f"{config.experiment}-{config.language}"
    )
    output_dir = Path(config.output_dir or default_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = write_outputs(summary, output_dir, language=config.language)
    files.append(write_report(summary, output_dir, figure_path=files[0], language=config.language))

    tags = {
        tracking.TAG_ROLE: tracking.ROLE_COMPARE,
        tracking.TAG_SWEEP_RUN_ID: sweep["run_id"],
        tracking.TAG_DATASET: summary["dataset"],
    }
    registered = {}
    with tracking.active_run(
        experiment_id, run_name=f"compare-{summary['dataset']}", tags=tags
    ) as compare_run_id:
        tracking.log_params({"metric": metric, "sweep_run_id": sweep["run_id"], "language": config.language})
        tracking.log_files(files)
        if config.register:
            registered = register_best(summary, force=config.force)
    return CompareResult(
        compare_run_id=compare_run_id,
        summary=summary,
        output_dir=output_dir,
        registered_versions=registered,
    )


def write_outputs(summary: dict, output_dir: Path, *, language: str) -> list[Path]:
    """Write ``dim_optimization.png``, ``summary.md`` and ``summary.json``; return their paths."""
    figure_path = output_dir / tracking.ARTIFACT_DIMENSION_PLOT
    methods = sorted({row["method"] for row in summary["table"]})
    fig = plots.dimension_figure(
        summary["table"], methods=methods, title=f"{summary['dataset']}: scores against latent_dim"
    )
    figure_path.write_bytes(plots.render_png(fig, dpi=120))

    markdown_path = output_dir / tracking.ARTIFACT_SUMMARY_MD
    markdown_path.write_text(report.summary_markdown(summary, language=language), encoding="utf-8")
    json_path = output_dir / tracking.ARTIFACT_SUMMARY_JSON
    json_path.write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=True), encoding="utf-8"
    )
    return [figure_path, markdown_path, json_path]


def write_report(summary: dict, output_dir: Path, *, figure_path: Path, language: str) -> Path:
    """Write ``report.html`` with the figures of the best runs embedded; return its path."""
    figures = {"dimension": figure_path.read_bytes()}
    for method, best in summary["best"].items():
        for artifact in REPORT_ARTIFACTS:
            content = tracking.read_artifact_bytes(best["run_id"], artifact)
            if content is not None:
                figures[f"{method}/{artifact}"] = content
    path = output_dir / tracking.ARTIFACT_REPORT
    path.write_text(report.report_html(summary, figures, language=language), encoding="utf-8")
    return path


PROTOCOL_TAGS = ("dataset", "split", "n_samples")
"""Tags that must match for two registered versions' scores to be comparable."""


def register_best(summary: dict, *, force: bool = False) -> dict:
    """Register the best autoencoder run's encoder and clusterer and move their ``best`` alias.

    Of the methods whose best run logged an encoder (``ae``, ``conv_ae`` and
    their combinations with ``+umap`` and ``+gmm``), the one with the
    highest mean of the chosen metric is registered. The alias moves only
    when the new run beats the version it points at on that metric, with
    the same data set and sample protocol. ``force`` moves it anyway. Each
    move or refusal is logged with both values.

    Returns
    -------
    versions : dict of str to str
        Registered model name to the version created; empty when nothing was registered.
    """
    metric = summary["metric"]
    candidates = {
        method: best for method, best in summary["best"].items()
        if parse_method(method)[0] in AUTOENCODERS and best.get("model_uri")
    }
    if not candidates:
        logger.warning("No autoencoder run with a logged encoder; nothing was registered.")
        return {}
    method = max(sorted(candidates), key=lambda name: candidates[name][metric])
    best_ae = candidates[method]
    value = best_ae["run_metrics"][metric]
    tags = {
        "dataset": summary["dataset"],
        "split": summary["setup"].get("split"),
        "n_samples": summary["setup"].get("n_samples"),
        "method": method,
        "latent_dim": best_ae["latent_dim"],
        "seed": best_ae["seed"],
        "metric": metric,
        "ari": _format(best_ae["run_metrics"].get("ari")),
        "silhouette": _format(best_ae["run_metrics"].get("silhouette")),
        metric: _format(value),
        "sweep_run_id": summary["sweep_run_id"],
        "run_id": best_ae["run_id"],
    }
    chosen = (
        f"Chosen by compare as the {method} run with the highest {metric} ({value:.4f}, seed "
        f"{best_ae['seed']}) at latent_dim={best_ae['latent_dim']}, the dimension with the best mean {metric} "
        f"({best_ae[metric]:.4f}) in sweep {summary['sweep_run_id']} on {summary['dataset']}."
    )
    models = {
        f"aeclust-{summary['dataset']}-encoder": (
            best_ae["model_uri"],
            f"Encoder of aeclust's {method} method: flattened pixels in [0, 1] to latent features. "
            + chosen,
        ),
        f"aeclust-{summary['dataset']}-clusterer": (
            best_ae.get("clusterer_uri"),
            "aeclust clusterer (MLflow pyfunc): images of the training shape to the cluster of "
            f"the {method} run, its majority class name and the distance to the cluster's "
            "centre. " + chosen,
        ),
    }

    versions = {}
    for name, (model_uri, description) in models.items():
        holder = tracking.alias_holder(name)
        if holder is not None and holder["tags"].get("run_id") == best_ae["run_id"]:
            logger.info(
                "%s@%s already points at run %s (version %s); nothing to register.",
                name, tracking.BEST_ALIAS, best_ae["run_id"], holder["version"],
            )
            continue
        if not model_uri:
            logger.warning("Run %s has no %s model; %s was not registered.", best_ae["run_id"], name, name)
            continue
        if not force and not _beats_alias_holder(name, tags, metric, value):
            continue
        versions[name] = tracking.register_model(model_uri, name, tags=tags, description=description)
    return versions


def _format(value) -> str:
    return "nan" if value is None else f"{value:.6f}"


def _beats_alias_holder(name: str, tags: dict, metric: str, value: float) -> bool:
    holder = tracking.alias_holder(name)
    if holder is None:
        return True
    held_tags = holder["tags"]
    keys = (*PROTOCOL_TAGS, "metric")
    differing = [
        f"{key} {held_tags.get(key)} -> {tags[key]}" for key in keys
        if str(held_tags.get(key)) != str(tags[key])
    ]
    if differing:
        logger.warning(
            "Not moving %s@%s from version %s: the scores are not comparable (%s). "
            "Pass --force to move it.",
            name, tracking.BEST_ALIAS, holder["version"], ", ".join(differing),
        )
        return False
    held_value = float(held_tags[metric])
    if value > held_value:
        logger.info(
            "Moving %s@%s: new %s=%.6f beats version %s with %s=%.6f.",
            name, tracking.BEST_ALIAS, metric, value, holder["version"], metric, held_value,
        )
        return True
    logger.info(
        "Keeping %s@%s on version %s: its %s=%.6f is not lower than the new run's %.6f. "
        "Pass --force to move it.",
        name, tracking.BEST_ALIAS, holder["version"], metric, held_value, value,
    )
    return False
