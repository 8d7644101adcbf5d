"""Bad and degenerate input: one-line errors or correct results, and no run left RUNNING."""

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from aeclust import data, models, plots, tracking
from aeclust.config import DataConfig
from tests.conftest import SQLITE_ONLY, assert_one_line_error, invoke_cli, run_statuses


def _only_digits_run():
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("aeclust-digits").experiment_id])
    assert len(runs) == 1
    return runs[0]


@SQLITE_ONLY
def test_pickle_only_npz_not_unpickled(tracking_uri, tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, images=np.array([object(), object()], dtype=object), labels=np.array([0, 1]))
    assert_one_line_error(invoke_cli("train", "--dataset", str(path)), 2, "could not be read as .npz")
    assert run_statuses() == []


@SQLITE_ONLY
def test_mixed_image_sizes_rejected(tracking_uri, image_folder):
    Image.fromarray(np.zeros((9, 9), dtype=np.uint8)).save(image_folder / "cross" / "big.png")
    assert_one_line_error(invoke_cli("sweep", "--dataset", str(image_folder)), 2, "mixes image shapes")


def test_column_labels_flattened(tmp_path):
    path = tmp_path / "column.npz"
    np.savez(path, images=np.zeros((4, 2, 2), dtype=np.uint8), labels=np.array([[0], [1], [0], [1]]))
    assert data.load_npz(path).labels.shape == (4,)


@pytest.mark.parametrize("value", ["1.5", "ten"])
@SQLITE_ONLY
def test_non_integer_latent_dim(tracking_uri, value):
    result = invoke_cli("train", "--latent-dim", value)
    assert result.exit_code == 2
    assert "--latent-dim" in result.output


@SQLITE_ONLY
def test_empty_dims_list_rejected(tracking_uri):
    result = invoke_cli("sweep", "--latent-dims", "")
    assert result.exit_code == 2
    assert "is not a comma-separated list of integers" in result.output


def test_more_clusters_than_distinct_features(tracking_uri, tmp_path):
    path = tmp_path / "twins.npz"
    images = np.zeros((20, 4, 4), dtype=np.uint8)
    images[10:] = 255
    np.savez(path, images=images, labels=np.repeat([0, 1], 10))
    result = invoke_cli("train", "--dataset", str(path), "--method", "pca", "--latent-dim", "2",
                     "--n-clusters", "5", "--no-tsne")
    assert_one_line_error(result, 2, "n_clusters=5 is larger than the 2 distinct feature vectors")
    assert "RUNNING" not in run_statuses()
    assert run_statuses() == ["FAILED"]


def test_unscaled_pixels_rejected():
    with pytest.raises(ValueError, match=r"values in \[0, 255\] but the autoencoder needs pixels in \[0, 1\]"):
        models.fit_autoencoder(np.array([[0.0, 255.0]] * 10, dtype=np.float32), latent_dim=1,
                               epochs=1, batch_size=4, random_state=0)


def test_long_param_goes_to_artifact(tracking_uri):
    client = MlflowClient()
    experiment_id = client.create_experiment("long")
    with tracking.active_run(experiment_id, run_name="long", tags={}) as run_id:
        tracking.log_params({"dataset": "x" * 7000, "seed": 1})
    run = client.get_run(run_id)
    assert run.data.params["dataset"] == "<7000 characters, in the artifact params/dataset.txt>"
    assert run.data.params["seed"] == "1"
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/params/dataset.txt") == "x" * 7000


def test_unicode_paths_and_experiment(tracking_uri, image_folder, tmp_path):
    renamed = image_folder.rename(tmp_path / "图像-ä")
    result = invoke_cli("sweep", "--dataset", str(renamed), "--methods", "pca", "--latent-dims", "4",
                     "--experiment", "实验-ä", "--no-tsne")
    assert result.exit_code == 0, result.output
    experiment = MlflowClient().get_experiment_by_name("实验-ä")
    runs = MlflowClient().search_runs([experiment.experiment_id], "tags.`aeclust.role` = 'run'")
    assert runs[0].data.params["dataset"] == str(renamed)


def test_plot_failure_keeps_run(tracking_uri, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(plots, "confusion_figure", broken)
    result = invoke_cli("train", "--method", "pca", "--latent-dim", "8", "--sample-size", "200",
                     "--no-tsne")
    assert result.exit_code == 0, result.output
    assert "Drawing confusion_matrix.png failed" in result.output
    run = _only_digits_run()
    assert run.info.status == "FINISHED"
    assert "ari" in run.data.metrics
    artifacts = {item.path for item in MlflowClient().list_artifacts(run.info.run_id)}
    assert "confusion_matrix.png" not in artifacts
    assert "cluster_gallery.png" in artifacts
    assert run.data.tags[tracking.TAG_MODEL_URI]


def test_symlink_out_of_folder_skipped(image_folder, tmp_path):
    outside = tmp_path / "outside.png"
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(outside)
    (image_folder / "cross" / "link.png").symlink_to(outside)
    loaded = data.load_dataset(DataConfig(dataset=str(image_folder)))
    assert len(loaded) == 18


def test_silhouette_missing_logged_as_tag(tracking_uri, monkeypatch):
    from aeclust import metrics

    monkeypatch.setattr(metrics, "silhouette", lambda X, labels, random_state, sample_size=None: (float("nan"), "exact"))
    result = invoke_cli("train", "--method", "pca", "--latent-dim", "8", "--sample-size", "200", "--no-tsne")
    assert result.exit_code == 0, result.output
    run = _only_digits_run()
    assert "silhouette" not in run.data.metrics
    assert run.data.tags[tracking.TAG_SILHOUETTE_MISSING].startswith("undefined for")
    assert "ari" in run.data.metrics


@pytest.mark.parametrize("value, accepted", [("true", True), ("No", True), ("1", True), ("on", False),
                                             ("t", False), ("maybe", False)])
def test_mlproject_booleans_strict(value, accepted, tmp_path):
    result = invoke_cli("compare", "--register-model", value, "--experiment", "none",
                     "--tracking-uri", f"sqlite:///{tmp_path / 'b.db'}")
    if accepted:
        assert "is not a boolean" not in result.output
        assert "experiment='none' was not found" in result.output
    else:
        assert result.exit_code == 2
        assert "is not a boolean: use true/false, 1/0 or yes/no" in result.output


def test_mlproject_numbers_strict(tracking_uri):
    result = invoke_cli("train", "--epochs", "3.0")
    assert result.exit_code == 2
    assert "--epochs" in result.output
