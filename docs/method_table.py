"""Print the Markdown table of docs/results.md for one sweep: scores and wall time per method.

Usage::

    python docs/method_table.py --experiment aeclust-digits [--sweep-run-id ID]

It reads the tracking store named by ``MLFLOW_TRACKING_URI``. Each row is a
(method, latent_dim) of the sweep with the mean ± standard deviation (ddof=0)
over seeds of ARI, NMI, ACC and silhouette, and the mean wall time of its
runs (from the runs' start and end times, plus the feature fit time of a run
that reused the features of another run of the sweep). A second table gives, per method,
its best latent_dim by mean ARI, the total wall time of the method's runs, and that
total divided by the total of the study's methods (ae and pca) in the same sweep.
"""

from __future__ import annotations

import argparse

import numpy as np
from mlflow import MlflowClient

SCORES = ("ari", "nmi", "acc", "silhouette")


def child_runs(client, experiment: str, sweep_run_id: str | None):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    if sweep_run_id is None:
        sweeps = client.search_runs(
            [experiment_id], "tags.`aeclust.role` = 'sweep'", order_by=["attributes.start_time DESC"]
        )
        sweep_run_id = sweeps[0].info.run_id
    runs = client.search_runs(
        [experiment_id],
        f"tags.`aeclust.sweep_run_id` = '{sweep_run_id}' and tags.`aeclust.role` = 'run' "
        "and attributes.status = 'FINISHED'",
        max_results=5000,
    )
    # A resumed sweep counts the earlier runs it reused as its own.
    runs += client.search_runs(
        [experiment_id], f"tags.`aeclust.reused_by.{sweep_run_id}` = 'true'", max_results=5000
    )
    return sweep_run_id, runs


def run_seconds(run) -> float:
    """Wall time of a run; a run that reused another run's features is charged their fit time too."""
    seconds = (run.info.end_time - run.info.start_time) / 1000
    if "aeclust.features_from" in run.data.tags:
        seconds += run.data.metrics.get("fit_seconds", 0.0)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True)
    parser.add_argument("--sweep-run-id")
    args = parser.parse_args()

    sweep_run_id, runs = child_runs(MlflowClient(), args.experiment, args.sweep_run_id)
    groups: dict[tuple, list] = {}
    for run in runs:
        key = (run.data.params["method"], int(run.data.params["latent_dim"]))
        groups.setdefault(key, []).append(run)

    n_reused = sum(f"aeclust.reused_by.{sweep_run_id}" in run.data.tags for run in runs)
    print(f"Sweep {sweep_run_id}, {len(runs)} finished runs ({n_reused} reused from an earlier sweep).\n")
    print("| method | latent_dim | seeds | ARI | NMI | ACC | silhouette | s per run |")
    print("|---|---|---|---|---|---|---|---|")
    best: dict[str, tuple] = {}
    seconds_per_method: dict[str, float] = {}
    for (method, dim), group in sorted(groups.items()):
        cells = []
        for score in SCORES:
            values = np.array([run.data.metrics[score] for run in group if score in run.data.metrics])
            cells.append(f"{values.mean():.4f} ± {values.std():.4f}" if len(values) else "n/a")
        seconds = [run_seconds(run) for run in group]
        seconds_per_method[method] = seconds_per_method.get(method, 0.0) + sum(seconds)
        ari = float(np.mean([run.data.metrics["ari"] for run in group]))
        if method not in best or ari > best[method][1]:
            best[method] = (dim, ari, cells)
        print(f"| {method} | {dim} | {len(group)} | " + " | ".join(cells) + f" | {np.mean(seconds):.0f} |")

    # The study's sweep runs ae and pca; each method's cost is compared with theirs, same dims and seeds.
    study_seconds = sum(seconds_per_method.get(method, 0.0) for method in ("ae", "pca"))
    print("\n| method | best latent_dim (ARI) | ARI | NMI | ACC | silhouette | all its runs, s "
          "| cost / (ae + pca) |")
    print("|---|---|---|---|---|---|---|---|")
    for method, (dim, _, cells) in sorted(best.items(), key=lambda item: -item[1][1]):
        ratio = seconds_per_method[method] / study_seconds if study_seconds else float("nan")
        print(f"| {method} | {dim} | " + " | ".join(cells)
              + f" | {seconds_per_method[method]:.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
