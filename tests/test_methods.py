"""The methods beyond the study: conv AE, the UMAP step, Gaussian mixtures and combinations."""

import io

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from aeclust import cluster, data, embed, models
from aeclust.config import ConfigError, RunConfig, SweepConfig, method_name, parse_method
from tests.conftest import assert_one_line_error, invoke_cli, module_store


@pytest.mark.parametrize(
    ("method", "flags", "expected"),
    [
        ("ae", {}, "ae"),
        ("ae+kmeans", {}, "ae"),
        ("conv_ae+gmm+umap", {}, "conv_ae+umap+gmm"),
        ("pca", {"manifold": "umap"}, "pca+umap"),
        ("pca+kmeans", {"clusterer": "gmm"}, "pca"),
        ("ae+none", {"manifold": "umap", "clusterer": "gmm"}, "ae+gmm"),
    ],
)
def test_method_names(method, flags, expected):
    assert method_name(method, **flags) == expected


@pytest.mark.parametrize("method", ["", "vae", "ae+umap+umap", "ae+tsne", "umap+ae", "ae+gmm+kmeans"])
def test_unknown_methods_rejected(method):
    with pytest.raises(ConfigError, match="is not supported"):
        parse_method(method)


def test_config_records_the_steps():
    config = RunConfig(method="pca+gmm+umap", latent_dim=8, umap_neighbors=7)
    params = config.params()
    assert (config.extractor, config.manifold, config.clusterer) == ("pca", "umap", "gmm")
    assert params["method"] == "pca+umap+gmm"
    assert params["umap_neighbors"] == 7
    assert params["learning_rate"] is None  # PCA has no learning rate.
    assert RunConfig(method="ae", learning_rate=0.01).params()["learning_rate"] == 0.01
    assert RunConfig(method="ae", learning_rate=0.01).config_hash() != RunConfig(method="ae").config_hash()


def test_sweep_methods_deduplicated():
    sweep = SweepConfig(base=RunConfig(), methods=("ae", "ae+kmeans", "pca+gmm"),
                        latent_dims=(8,))
    assert sweep.methods == ("ae", "pca+gmm")
    assert {config.method for config in sweep.run_configs()} == {"ae", "pca+gmm"}


@pytest.mark.parametrize("learning_rate", [0.0, -0.1])
def test_learning_rate_must_be_positive(learning_rate):
    with pytest.raises(ConfigError, match=f"learning_rate={learning_rate} is invalid"):
        RunConfig(learning_rate=learning_rate)


@pytest.mark.parametrize("image_shape", [(28, 28, 1), (32, 32, 3), (8, 8, 1), (13, 11, 2)])
def test_conv_autoencoder_shapes(image_shape):
    n_pixels = int(np.prod(image_shape))
    autoencoder, encoder = models.build_conv_autoencoder(image_shape, latent_dim=10, random_state=0)
    assert autoencoder.input_shape == (None, n_pixels)
    assert autoencoder.output_shape == (None, n_pixels)
    assert encoder.output_shape == (None, 10)


def test_conv_autoencoder_trains_and_is_seeded():
    X = np.random.default_rng(0).random((64, 8 * 8 * 3), dtype=np.float32)

    def fit():
        return models.fit_autoencoder(
            X, latent_dim=4, epochs=2, batch_size=16, random_state=3, learning_rate=0.01,
            image_shape=(8, 8, 3),
        )

    first, second = fit(), fit()
    assert first.features.shape == (64, 4)
    assert first.reconstructions.shape == (6, 8 * 8 * 3)  # 10% of 64 rows held out.
    assert first.history["train_loss"][1] < first.history["train_loss"][0]
    np.testing.assert_allclose(first.features, second.features, rtol=1e-5, atol=1e-6)


def test_learning_rate_changes_training():
    X = np.random.default_rng(1).random((64, 16), dtype=np.float32)
    slow = models.fit_autoencoder(X, latent_dim=3, epochs=2, batch_size=16, random_state=0,
                                  learning_rate=1e-5)
    fast = models.fit_autoencoder(X, latent_dim=3, epochs=2, batch_size=16, random_state=0,
                                  learning_rate=1e-2)
    assert fast.history["train_loss"][-1] < slow.history["train_loss"][-1]


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=300, centers=4, n_features=6, cluster_std=0.5, random_state=0)
    return X.astype(np.float32), y


def test_gmm_finds_blobs_and_is_seeded(blobs):
    X, y = blobs
    labels, means, model = cluster.fit_clusters(X, clusterer="gmm", n_clusters=4, n_init=2, random_state=5)
    again, _, _ = cluster.fit_clusters(X, clusterer="gmm", n_clusters=4, n_init=2, random_state=5)
    assert adjusted_rand_score(y, labels) == pytest.approx(1.0)
    np.testing.assert_array_equal(labels, again)
    assert means.shape == (4, 6)
    assert model.covariance_type == "full"


def test_umap_step_separates_blobs(blobs):
    X, y = blobs
    model, embedding = embed.umap_embed(X, n_components=3, n_neighbors=10, random_state=7)
    _, again = embed.umap_embed(X, n_components=3, n_neighbors=10, random_state=7)
    assert embedding.shape == (300, 3)
    np.testing.assert_allclose(embedding, again)
    labels, _, _ = cluster.fit_clusters(embedding, clusterer="kmeans", n_clusters=4, n_init=3, random_state=0)
    assert adjusted_rand_score(y, labels) == pytest.approx(1.0)
    assert model.transform(X[:5]).shape == (5, 3)


def test_bad_method_is_one_line_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke_cli("sweep", "--methods", "ae,ae+tsne", "--latent-dims", "4")
    assert_one_line_error(result, 2, "ae+tsne", "+umap")


SAMPLE = 300


@pytest.fixture(scope="module")
def combined_sweep(tmp_path_factory):
    """One sweep with conv_ae+umap+gmm and pca+gmm on a digits sample, then compare."""
    workdir = tmp_path_factory.mktemp("methods")
    with module_store(workdir):
        swept = invoke_cli(
            "sweep", "--methods", "conv_ae+umap+gmm,pca", "--clusterer", "gmm", "--latent-dims", "6",
            "--epochs", "2", "--sample-size", str(SAMPLE), "--no-tsne", "--umap-neighbors", "10",
            "--learning-rate", "0.005",
        )
        assert swept.exit_code == 0, swept.output
        compared = invoke_cli("compare", "--output-dir", str(workdir / "out"))
        assert compared.exit_code == 0, compared.output
        client = MlflowClient()
        experiment_id = client.get_experiment_by_name("aeclust-digits").experiment_id
        runs = client.search_runs([experiment_id], "tags.`aeclust.role` = 'run'")
        yield {"dir": workdir, "runs": {run.data.params["method"]: run for run in runs},
               "compare_output": compared.output}


def test_combined_runs_record_their_steps(combined_sweep):
    runs = combined_sweep["runs"]
    assert set(runs) == {"conv_ae+umap+gmm", "pca+gmm"}
    conv = runs["conv_ae+umap+gmm"].data
    assert conv.params["extractor"] == "conv_ae"
    assert conv.params["cluster_space"] == "umap"
    assert conv.params["umap_dim"] == "10"  # The number of digit classes.
    assert conv.params["learning_rate"] == "0.005"
    assert "manifold_seconds" in conv.metrics
    assert runs["pca+gmm"].data.params["cluster_space"] == "features"
    assert runs["pca+gmm"].data.params["gmm_n_init"] == "3"


def test_compare_reports_each_combination(combined_sweep):
    summary = (combined_sweep["dir"] / "out" / "summary.md").read_text(encoding="utf-8")
    assert "conv_ae+umap+gmm" in summary
    assert "pca+gmm" in summary
    assert "registered models:/aeclust-digits-clusterer@best" in combined_sweep["compare_output"]


def test_registered_combined_clusterer_predicts(combined_sweep):
    """The clusterer of a conv_ae+umap+gmm run maps new images through UMAP and the mixture."""
    run = combined_sweep["runs"]["conv_ae+umap+gmm"]
    logged = pd.read_csv(io.StringIO(
        mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/cluster_assignments.csv")
    ))
    sample = data.draw_sample(data.load_digits(), sample_size=SAMPLE, random_state=42)
    model = mlflow.pyfunc.load_model("models:/aeclust-digits-clusterer@best")
    predicted = model.predict(sample.images)
    assert len(predicted) == SAMPLE
    assert set(predicted["cluster"]) <= set(logged["cluster"])
    # UMAP's transform of the training images differs from its fitted embedding, so most,
    # not all, images are expected in their logged cluster.
    agreement = adjusted_rand_score(logged["cluster"], predicted["cluster"])
    assert agreement > 0.5, agreement


def test_shared_extractor_fitted_once(tmp_path, monkeypatch):
    """pca and pca+gmm of one seed and dim share one fit, and the second run names the first."""
    from aeclust import pipeline

    fits = []
    original = pipeline._fit_extractor

    def counting_fit(config, *args):
        fits.append(config.method)
        return original(config, *args)

    monkeypatch.setattr(pipeline, "_fit_extractor", counting_fit)
    with module_store(tmp_path):
        result = invoke_cli("sweep", "--methods", "pca,pca+gmm,ae", "--latent-dims", "4",
                            "--epochs", "1", "--sample-size", "200", "--no-tsne")
        assert result.exit_code == 0, result.output
        runs = {run.data.params["method"]: run for run in MlflowClient().search_runs(
            [MlflowClient().get_experiment_by_name("aeclust-digits").experiment_id],
            "tags.`aeclust.role` = 'run'")}
    assert fits == ["pca", "ae"]
    assert runs["pca+gmm"].data.tags["aeclust.features_from"] == runs["pca"].info.run_id
    assert "aeclust.features_from" not in runs["pca"].data.tags
