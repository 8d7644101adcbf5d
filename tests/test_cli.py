"""Command-line input checks: one-line errors, exit status 2, nothing left RUNNING."""

import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from aeclust.cli import main


def _invoke(*args):
    return CliRunner().invoke(main, list(args))


def _assert_usage_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1, result.output
    for fragment in fragments:
        assert fragment in error_lines[0]


def _no_running_runs():
    client = MlflowClient()
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments]) if experiments else []
    return all(run.info.status != "RUNNING" for run in runs), len(runs)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (("train", "--dataset", "imagenet"), ("dataset='imagenet' was not found",)),
        (("train", "--latent-dim", "0"), ("latent_dim=0 is invalid",)),
        (("train", "--method", "pca", "--latent-dim", "100"),
         ("latent_dim=100 is too large for method=pca", "at most 64")),
        (("sweep", "--methods", "pca", "--latent-dims", "16,128"),
         ("latent_dim=128 is too large",)),
        (("train", "--sample-size", "5000"), ("sample_size=5000 is larger than the 1797",)),
        (("sweep", "--latent-dims", "8,-4"), ("latent_dim=-4 is invalid",)),
        (("train", "--sample-size", "-3"), ("sample_size=-3 is invalid",)),
        (("train", "--n-clusters", "1"), ("n_clusters=1 is invalid",)),
    ],
)
def test_bad_values_exit_2(tracking_uri, args, fragments):
    result = _invoke(*args)
    _assert_usage_error(result, *fragments)
    no_running, n_runs = _no_running_runs()
    assert no_running
    assert n_runs == 0


def test_bad_choice_names_option(tracking_uri):
    result = _invoke("sweep", "--methods", "ae,vae")
    assert result.exit_code == 2
    assert "--methods" in result.output
    assert "'ae,vae' is invalid" in result.output


def test_non_image_npz_exit_2(tracking_uri, tmp_path):
    path = tmp_path / "table.npz"
    np.savez(path, values=np.arange(4))
    _assert_usage_error(_invoke("train", "--dataset", str(path)), "has no images or labels")


def test_empty_folder_exit_2(tracking_uri, tmp_path):
    (tmp_path / "photos" / "cats").mkdir(parents=True)
    result = _invoke("sweep", "--dataset", str(tmp_path / "photos"))
    _assert_usage_error(result, "has no images")


@pytest.mark.parametrize("command", ["train", "sweep", "compare"])
def test_help_states_defaults(command):
    result = _invoke(command, "--help")
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "[default: digits]" in text
    assert "[default: aeclust-<dataset>]" in text


def test_sweep_help_lists_dims():
    output = " ".join(_invoke("sweep", "--help").output.split())
    assert "16,32,64,128,256" in output
    assert "[default: ae,pca]" in output


@pytest.mark.parametrize("dims", ["16,,32", "16;32", "16,abc"])
def test_malformed_dims_list_rejected(tracking_uri, dims):
    result = _invoke("sweep", "--latent-dims", dims)
    assert result.exit_code == 2
    assert "is not a comma-separated list of integers" in result.output


def test_one_class_rejected(tracking_uri, tmp_path):
    path = tmp_path / "single.npz"
    np.savez(path, images=np.zeros((20, 4, 4), dtype=np.uint8), labels=np.zeros(20, dtype=int))
    _assert_usage_error(_invoke("sweep", "--dataset", str(path)), "has 1 class(es)")


def test_corrupt_image_named(tracking_uri, image_folder):
    broken = image_folder / "cross" / "broken.png"
    broken.write_bytes(b"not a png")
    _assert_usage_error(_invoke("sweep", "--dataset", str(image_folder)), "broken.png", "could not be read")
