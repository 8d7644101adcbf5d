"""The clusterer model: predict, the REST server, warm starts and the best alias."""

import io
import json
import logging
import os
import subprocess
import sys
import urllib.request

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from aeclust import compare, data, tracking
from aeclust.cli import main
from tests.conftest import free_port, module_store, wait_for_http

pytestmark = pytest.mark.slow

SAMPLE = 300


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Sweep the autoencoder on a digits sample, compare and register, in a module-wide store."""
    workdir = tmp_path_factory.mktemp("serving")
    with module_store(workdir) as uri:
        runner = CliRunner()
        swept = runner.invoke(main, ["sweep", "--methods", "ae", "--latent-dims", "8",
                                     "--epochs", "3", "--sample-size", str(SAMPLE), "--no-tsne"])
        assert swept.exit_code == 0, swept.output
        compared = runner.invoke(main, ["compare"])
        assert compared.exit_code == 0, compared.output

        sample = data.draw_sample(data.load_digits(), sample_size=SAMPLE, random_state=42)
        np.savez(workdir / "sample.npz", images=sample.images[..., 0], labels=sample.labels)
        client = MlflowClient()
        experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
        run = client.search_runs([experiment_id], "tags.`aeclust.role` = 'run'")[0]
        logged = pd.read_csv(io.StringIO(
            mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/cluster_assignments.csv")
        ))
        yield {"dir": workdir, "uri": uri, "run": run, "logged": logged, "runner": runner}


MODEL = "models:/aeclust-digits-clusterer@best"


def test_predict_matches_logged_clusters(study):
    output = study["dir"] / "predicted.csv"
    result = study["runner"].invoke(
        main, ["predict", "--model-uri", MODEL, "--input", str(study["dir"] / "sample.npz"),
               "--output", str(output)],
    )
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(output)
    assert list(predicted.columns) == ["id", "cluster", "class_name", "distance"]
    assert np.array_equal(predicted["cluster"].to_numpy(), study["logged"]["cluster"].to_numpy())
    assert (predicted["distance"] >= 0).all()


def test_predict_embedding_column(study, tmp_path):
    import json as json_module

    output = tmp_path / "with-embedding.csv"
    result = study["runner"].invoke(
        main, ["predict", "--model-uri", MODEL, "--input", str(study["dir"] / "sample.npz"),
               "--output", str(output), "--embedding"],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(output)
    assert len(json_module.loads(table["embedding"][0])) == 8
    assert np.array_equal(table["cluster"].to_numpy(), study["logged"]["cluster"].to_numpy())


def test_registered_versions_tagged(study):
    client = MlflowClient()
    for name in ("aeclust-digits-encoder", "aeclust-digits-clusterer"):
        version = client.get_model_version_by_alias(name, "best")
        for tag in ("dataset", "method", "latent_dim", "seed", "ari", "silhouette", "sweep_run_id"):
            assert tag in version.tags, (name, tag)
        assert "Chosen by compare" in version.description


def test_predict_folder_wrong_size(study, tmp_path):
    from PIL import Image

    folder = tmp_path / "new"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.full((16, 16), index * 80, dtype=np.uint8)).save(folder / f"{index}.png")
    args = ["predict", "--model-uri", MODEL, "--input", str(folder),
            "--output", str(tmp_path / "out.parquet")]
    rejected = study["runner"].invoke(main, args)
    assert rejected.exit_code == 2
    assert "input image '0.png' has shape (16, 16, 1) but the model expects (8, 8, 1)" in rejected.output
    resized = study["runner"].invoke(main, [*args, "--resize"])
    assert resized.exit_code == 0, resized.output
    table = pd.read_parquet(tmp_path / "out.parquet")
    assert table["id"].tolist() == ["0.png", "1.png", "2.png"]


def test_clusterer_loads_in_fresh_process(study):
    code = (
        "import mlflow, numpy as np;"
        f"m = mlflow.pyfunc.load_model('{MODEL}');"
        "print(m.predict(np.zeros((2, 8, 8), dtype=np.uint8))['cluster'].tolist());"
        "e = mlflow.keras.load_model('models:/aeclust-digits-encoder@best');"
        "print(e.output_shape)"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": study["uri"]}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300, cwd=study["dir"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(None, 8)" in done.stdout


def test_rest_server_matches_predict(study):
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": study["uri"]}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", MODEL, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        env=env, cwd=study["dir"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, timeout=180)

        with np.load(study["dir"] / "sample.npz") as archive:
            images = archive["images"][:20]
        body = json.dumps({"inputs": images.tolist()}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            predictions = json.loads(reply.read())["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    clusters = [row["cluster"] for row in predictions]
    assert clusters == study["logged"]["cluster"].tolist()[:20]


def test_warm_start_records_source(study):
    result = study["runner"].invoke(main, [
        "train", "--method", "ae", "--latent-dim", "8", "--epochs", "1", "--sample-size", "200",
        "--no-tsne", "--init-encoder", "models:/aeclust-digits-encoder@best", "--experiment", "warm",
    ])
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("warm").experiment_id])[0]
    assert run.data.params["init_encoder"] == "models:/aeclust-digits-encoder@best"
    assert run.data.tags[tracking.TAG_INIT_ENCODER] == "aeclust-digits-encoder/1"


def test_warm_start_mismatch_rejected(study):
    result = study["runner"].invoke(main, [
        "train", "--method", "ae", "--latent-dim", "16", "--epochs", "1", "--sample-size", "200",
        "--init-encoder", "models:/aeclust-digits-encoder@best", "--experiment", "warm-bad",
    ])
    assert result.exit_code == 2
    assert "init_encoder takes 64 pixels to latent_dim=8" in result.output
    assert "needs 64 pixels to latent_dim=16" in result.output
    assert MlflowClient().get_experiment_by_name("warm-bad") is None


def test_second_compare_keeps_alias(study):
    client = MlflowClient()
    before = client.get_model_version_by_alias("aeclust-digits-encoder", "best").version
    again = study["runner"].invoke(main, ["compare"])
    assert again.exit_code == 0, again.output
    assert "already points at run" in again.output
    assert "registered models:/" not in again.output
    assert client.get_model_version_by_alias("aeclust-digits-encoder", "best").version == before


def test_compare_other_sweep_follows_policy(study):
    client = MlflowClient()
    holder = client.get_model_version_by_alias("aeclust-digits-encoder", "best")
    other = study["runner"].invoke(main, ["sweep", "--methods", "ae", "--latent-dims", "8", "--epochs", "1",
                                          "--seed", "7", "--sample-size", str(SAMPLE), "--no-tsne"])
    assert other.exit_code == 0, other.output

    compared = study["runner"].invoke(main, ["compare"])
    assert compared.exit_code == 0, compared.output
    after = client.get_model_version_by_alias("aeclust-digits-encoder", "best")
    if after.version == holder.version:
        # The one-epoch sweep did not beat the holder, so the alias stays (twice) and the log gives the reason.
        assert "Keeping aeclust-digits-encoder@best on version" in compared.output
        again = study["runner"].invoke(main, ["compare"])
        assert "Keeping aeclust-digits-encoder@best on version" in again.output
        assert client.get_model_version_by_alias("aeclust-digits-encoder", "best").version == holder.version
    else:
        assert float(after.tags["ari"]) > float(holder.tags["ari"])
        assert "Moving aeclust-digits-encoder@best" in compared.output


def test_worse_candidate_keeps_alias(study, caplog):
    client = MlflowClient()
    holder = client.get_model_version_by_alias("aeclust-digits-encoder", "best")
    summary = {
        "dataset": "digits", "metric": "ari", "sweep_run_id": "other",
        "setup": {"split": holder.tags["split"], "n_samples": holder.tags["n_samples"]},
        "best": {"ae": {
            "latent_dim": 8, "ari": -0.5, "run_id": "a-worse-run", "seed": "7",
            "run_metrics": {"ari": -0.5, "silhouette": 0.1},
            "model_uri": study["run"].data.tags[tracking.TAG_MODEL_URI],
            "clusterer_uri": study["run"].data.tags[tracking.TAG_CLUSTERER_URI],
        }},
    }
    with caplog.at_level(logging.INFO, logger="aeclust"):
        assert compare.register_best(summary) == {}
    assert "is not lower than the new run's -0.500000" in caplog.text
    after = client.get_model_version_by_alias("aeclust-digits-encoder", "best")
    assert after.version == holder.version

    forced = compare.register_best(summary, force=True)
    assert set(forced) == {"aeclust-digits-encoder", "aeclust-digits-clusterer"}
    moved = client.get_model_version_by_alias("aeclust-digits-encoder", "best")
    assert moved.version != holder.version


def test_predict_float_npz_same_clusters(study, tmp_path):
    with np.load(study["dir"] / "sample.npz") as archive:
        images = archive["images"].astype(np.float32) / 255.0
    np.savez(tmp_path / "float.npz", images=images)
    output = tmp_path / "float.csv"
    model_uri = study["run"].data.tags[tracking.TAG_CLUSTERER_URI]
    result = study["runner"].invoke(
        main, ["predict", "--model-uri", model_uri, "--input", str(tmp_path / "float.npz"),
               "--output", str(output)],
    )
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(output)
    assert np.array_equal(predicted["cluster"].to_numpy(), study["logged"]["cluster"].to_numpy())
