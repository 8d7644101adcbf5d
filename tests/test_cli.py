"""Command-line input checks: one-line errors, exit status 2, nothing left RUNNING."""

import numpy as np
import pytest

from tests.conftest import SQLITE_ONLY, assert_one_line_error, invoke_cli, run_statuses


def assert_usage_error(result, *fragments):
    assert_one_line_error(result, 2, *fragments)


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
@SQLITE_ONLY
def test_bad_values_exit_2(tracking_uri, args, fragments):
    result = invoke_cli(*args)
    assert_one_line_error(result, 2, *fragments)
    assert run_statuses() == []


@SQLITE_ONLY
def test_bad_choice_names_option(tracking_uri):
    result = invoke_cli("sweep", "--methods", "ae,vae")
    assert result.exit_code == 2
    assert "--methods" in result.output
    assert "method='vae' is not supported" in result.output


@SQLITE_ONLY
def test_non_image_npz_exit_2(tracking_uri, tmp_path):
    path = tmp_path / "table.npz"
    np.savez(path, values=np.arange(4))
    assert_usage_error(invoke_cli("train", "--dataset", str(path)), "has no images or labels")


@SQLITE_ONLY
def test_empty_folder_exit_2(tracking_uri, tmp_path):
    (tmp_path / "photos" / "cats").mkdir(parents=True)
    result = invoke_cli("sweep", "--dataset", str(tmp_path / "photos"))
    assert_usage_error(result, "has no images")


@pytest.mark.parametrize("command", ["train", "sweep", "compare"])
def test_help_states_defaults(command):
    result = invoke_cli(command, "--help")
    text = " ".join(result.output.split())
    assert result.exit_code == 0
    assert "[default: digits]" in text
    assert "[default: aeclust-<dataset>]" in text


def test_sweep_help_lists_dims():
    output = " ".join(invoke_cli("sweep", "--help").output.split())
    assert "16,32,64,128,256" in output
    assert "[default: ae,pca]" in output


@pytest.mark.parametrize("dims", ["16,,32", "16;32", "16,abc"])
@SQLITE_ONLY
def test_malformed_dims_list_rejected(tracking_uri, dims):
    result = invoke_cli("sweep", "--latent-dims", dims)
    assert result.exit_code == 2
    assert "is not a comma-separated list of integers" in result.output


@SQLITE_ONLY
def test_one_class_rejected(tracking_uri, tmp_path):
    path = tmp_path / "single.npz"
    np.savez(path, images=np.zeros((20, 4, 4), dtype=np.uint8), labels=np.zeros(20, dtype=int))
    assert_usage_error(invoke_cli("sweep", "--dataset", str(path)), "has 1 class(es)")


@SQLITE_ONLY
def test_corrupt_image_named(tracking_uri, image_folder):
    broken = image_folder / "cross" / "broken.png"
    broken.write_bytes(b"not a png")
    assert_usage_error(invoke_cli("sweep", "--dataset", str(image_folder)), "broken.png", "could not be read")
