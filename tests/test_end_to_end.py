"""Sweep and compare on scikit-learn digits into a temporary SQLite store.

These tests train real (small) autoencoders, so they take about a minute each.
"""

import os
import subprocess
import sys

import mlflow
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from aeclust import tracking
from aeclust.cli import main
from tests.conftest import REPO_ROOT, SQLITE_ONLY, free_port, module_store, wait_for_http

pytestmark = pytest.mark.slow

SWEEP_ARGS = ["--latent-dims", "8,16", "--epochs", "3", "--sample-size", "600"]


def _runs_of(client, experiment_id, sweep_id):
    return client.search_runs(
        [experiment_id],
        f"tags.`{tracking.TAG_SWEEP_RUN_ID}` = '{sweep_id}' and tags.`{tracking.TAG_ROLE}` = 'run'",
    )


@pytest.fixture(scope="module")
def digits_study(tmp_path_factory):
    """Run one small sweep and its compare on digits into a module-wide SQLite store."""
    workdir = tmp_path_factory.mktemp("study")
    with module_store(workdir) as uri:
        runner = CliRunner()
        swept = runner.invoke(main, ["sweep", *SWEEP_ARGS])
        compared = runner.invoke(main, ["compare", "--output-dir", str(workdir / "out")])
        yield {"uri": uri, "dir": workdir, "swept": swept, "compared": compared}


def test_sweep_then_compare(digits_study):
    swept, compared = digits_study["swept"], digits_study["compared"]
    assert swept.exit_code == 0, swept.output

    client = MlflowClient(tracking_uri=digits_study["uri"])
    experiment = client.get_experiment_by_name("aeclust-digits")
    assert experiment is not None
    sweep_run = client.search_runs(
        [experiment.experiment_id], f"tags.`{tracking.TAG_ROLE}` = 'sweep'"
    )[0]
    assert sweep_run.info.status == "FINISHED"
    assert sweep_run.data.metrics["n_failed_runs"] == 0

    children = _runs_of(client, experiment.experiment_id, sweep_run.info.run_id)
    assert len(children) == 4
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == sweep_run.info.run_id
        params = child.data.params
        assert params["dataset"] == "digits"
        assert params["sample_size"] == "600"
        assert params["n_clusters"] == "10"
        assert params["n_init"] == "10"
        for metric in ("silhouette", "ari", "nmi", "acc", "fit_seconds"):
            assert metric in child.data.metrics
        assert child.data.metrics["n_samples"] == 600
        artifacts = {item.path for item in client.list_artifacts(child.info.run_id)}
        assert {"tsne.png", "confusion_pairs.csv", "confusion_matrix.png",
                "cluster_gallery.png"} <= artifacts
        assert child.data.tags[tracking.TAG_MODEL_URI].startswith("models:/")

    ae_run = next(run for run in children if run.data.params["method"] == "ae")
    assert "reconstruction_mse" in ae_run.data.metrics
    assert "reconstructions.png" in {item.path for item in client.list_artifacts(ae_run.info.run_id)}
    val_curve = client.get_metric_history(ae_run.info.run_id, "val_loss")
    assert [point.step for point in val_curve] == list(range(len(val_curve)))
    assert 1 <= len(val_curve) <= 3

    pca_run = next(run for run in children if run.data.params["method"] == "pca")
    # PCA scores on a seeded sample are deterministic; the study's PCA ARI on digits is about 0.6.
    assert 0.4 < pca_run.data.metrics["ari"] < 0.9

    output_dir = digits_study["dir"] / "out"
    assert compared.exit_code == 0, compared.output
    assert "Conclusion" in compared.output
    for name in ("summary.md", "summary.json", "dim_optimization.png", "report.html"):
        assert (output_dir / name).stat().st_size > 0


    version = client.get_model_version_by_alias("aeclust-digits-encoder", "best")
    assert version.tags["dataset"] == "digits"
    assert version.tags["method"] == "ae"
    encoder = mlflow.pyfunc.load_model("models:/aeclust-digits-encoder@best")
    import numpy as np

    features = encoder.predict(np.zeros((2, 64), dtype=np.float32))
    assert np.asarray(features).shape == (2, int(version.tags["latent_dim"]))


def test_report_images_load_in_browser(digits_study):
    from playwright.sync_api import sync_playwright

    from tests.browser import broken_images, open_browser

    path = digits_study["dir"] / "out" / "report.html"
    assert path.exists(), digits_study["compared"].output
    with sync_playwright() as playwright:
        browser = open_browser(playwright)
        page = browser.new_page()
        page.goto(path.resolve().as_uri())
        n_images = page.evaluate("document.images.length")
        broken = broken_images(page)
        headings = page.locator("h2").all_inner_texts()
        browser.close()
    # The score plot, then t-SNE, confusion and gallery per method, and reconstructions for ae.
    assert n_images == 1 + 3 * 2 + 1
    assert broken == []
    assert "Conclusion" in headings


def test_mlflow_ui_shows_runs_and_report(digits_study, tmp_path):
    """Open the experiment and the compare run's report in the MLflow UI on 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    from tests.browser import chromium_path, open_browser

    chromium_path()
    tracking_uri = digits_study["uri"]
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
    compare_run_id = digits_study["compared"].output.split("compare_run_id=")[1].split()[0]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    screenshots = os.environ.get("AECLUST_SCREENSHOT_DIR", str(tmp_path))
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"{base}/health", server, timeout=120)

        with sync_playwright() as playwright:
            browser = open_browser(playwright)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{base}/#/experiments/{experiment_id}/runs")
            page.get_by_text("sweep-digits").wait_for(timeout=60_000)
            sweep_row = page.locator("div.ag-row", has_text="sweep-digits").first
            sweep_row.locator("button[data-component-id*='runnamecellrenderer']").first.click()
            page.get_by_text("ae-d8-s42").wait_for(timeout=30_000)
            page.screenshot(path=f"{screenshots}/mlflow-ui-runs.png")

            page.goto(f"{base}/#/experiments/{experiment_id}/runs/{compare_run_id}/artifacts/report.html")
            report_frame = None
            for _ in range(60):
                report_frame = next(
                    (frame for frame in page.frames if "aeclust report" in _frame_text(frame)), None
                )
                if report_frame is not None:
                    break
                page.wait_for_timeout(1000)
            assert report_frame is not None, "report.html is not shown in the artifact view"
            page.screenshot(path=f"{screenshots}/mlflow-ui-report.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _frame_text(frame):
    try:
        return frame.inner_text("body", timeout=1000)
    except Exception:  # Frames that are still loading have no body yet.
        return ""


@SQLITE_ONLY
def test_same_seed_same_scores(tracking_uri):
    runner = CliRunner()
    args = ["train", "--method", "ae", "--latent-dim", "8", "--epochs", "2",
            "--sample-size", "300", "--no-tsne"]
    first = runner.invoke(main, args)
    second = runner.invoke(main, args)
    assert first.exit_code == 0, first.output

    def scores(result):
        line = next(line for line in result.output.splitlines() if line.startswith("run_id="))
        return line.split(" ", 1)[1]

    assert "ari=" in scores(first)
    assert scores(first) == scores(second)


@SQLITE_ONLY
def test_mlflow_run_project(tracking_uri, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    mlflow_cli = [sys.executable, "-m", "mlflow", "run", str(REPO_ROOT), "--env-manager", "local",
                  "--experiment-name", "aeclust-digits"]
    sweep = subprocess.run(
        [*mlflow_cli, "-e", "sweep", "-P", "dataset=digits", "-P", "latent_dims=8",
         "-P", "epochs=2", "-P", "sample_size=400"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    compare = subprocess.run(
        [*mlflow_cli, "-e", "compare", "-P", "dataset=digits", "-P", f"output_dir={tmp_path / 'o'}"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert compare.returncode == 0, compare.stderr[-3000:]

    client = MlflowClient()
    experiment = client.get_experiment_by_name("aeclust-digits")
    sweeps = client.search_runs([experiment.experiment_id], f"tags.`{tracking.TAG_ROLE}` = 'sweep'")
    assert len(sweeps) == 1
    children = _runs_of(client, experiment.experiment_id, sweeps[0].info.run_id)
    assert sorted(run.data.params["method"] for run in children) == ["ae", "pca"]
    assert all(run.data.tags["mlflow.parentRunId"] == sweeps[0].info.run_id for run in children)
    assert client.get_model_version_by_alias("aeclust-digits-encoder", "best") is not None
    assert (tmp_path / "o" / "summary.json").exists()


def test_failed_run_marked_and_named(tracking_uri, monkeypatch):
    from aeclust import models

    real_fit_pca = models.fit_pca

    def fit_pca_failing_at_16(X, *, latent_dim, random_state):
        if latent_dim == 16:
            raise FloatingPointError("simulated failure")
        return real_fit_pca(X, latent_dim=latent_dim, random_state=random_state)

    monkeypatch.setattr(models, "fit_pca", fit_pca_failing_at_16)
    result = CliRunner().invoke(
        main, ["sweep", "--methods", "pca", "--latent-dims", "8,16,32", "--sample-size", "300",
               "--no-tsne"],
    )
    assert result.exit_code == 1
    assert "1 run(s) of sweep" in result.output
    assert "pca-d16-s42" in result.output

    client = MlflowClient()
    experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
    runs = client.search_runs([experiment_id])
    statuses = {run.data.tags["mlflow.runName"]: run.info.status for run in runs}
    assert statuses["pca-d8-s42"] == "FINISHED"
    assert statuses["pca-d32-s42"] == "FINISHED"
    assert statuses["pca-d16-s42"] == "FAILED"
    assert statuses["sweep-digits"] == "FAILED"
    failed = next(run for run in runs if run.data.tags["mlflow.runName"] == "pca-d16-s42")
    assert "simulated failure" in failed.data.tags[tracking.TAG_FAILURE]
