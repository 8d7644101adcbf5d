"""Data sources: TFDS through mocks, digits, folders, .npz files and sampling."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from aeclust import data
from aeclust.config import ConfigError, DataConfig
from tests.conftest import SHARED_DATA


def _tfds_arrays(name, split="train"):
    builder = tfds.builder(name)
    batches = list(tfds.as_numpy(builder.as_dataset(split=split, as_supervised=True).batch(64)))
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_emnist_mock_is_transposed_upright():
    with tfds.testing.mock_data(num_examples=12):
        stored, stored_labels = _tfds_arrays("emnist/balanced")
        loaded = data.load_tfds("emnist", split="train")
    assert loaded.images.shape == (12, 28, 28, 1)
    assert np.array_equal(loaded.images, np.swapaxes(stored, 1, 2))
    assert np.array_equal(loaded.labels, stored_labels)
    assert loaded.n_classes == 47
    assert loaded.class_names[:3] == ("0", "1", "2")
    assert loaded.class_names[36:] == tuple("abdefghnqrt")


def test_cifar10_mock_names_and_flat_labels():
    with tfds.testing.mock_data(num_examples=10):
        loaded = data.load_dataset(DataConfig(dataset="cifar10"))
    assert loaded.images.shape == (10, 32, 32, 3)
    assert loaded.labels.ndim == 1
    assert loaded.class_names[0] == "airplane"
    assert loaded.class_names[-1] == "truck"


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_mnist_like_mocks_load(name):
    with tfds.testing.mock_data(num_examples=5):
        loaded = data.load_tfds(name)
    assert loaded.images.shape == (5, 28, 28, 1)
    assert loaded.n_classes == 10


def test_tfds_missing_data_fails_at_once(tmp_path, monkeypatch):
    def no_network(self, *args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
    with pytest.raises(data.DataSourceError, match="is not in .* and could not be downloaded"):
        data.load_tfds("cifar10", data_dir=str(tmp_path))


def test_emnist_upright_fixes_asymmetric_image():
    # An "L" drawn upright: a vertical bar on the left and a foot at the bottom.
    upright = np.zeros((5, 5), dtype=np.uint8)
    upright[:, 0] = 255
    upright[4, :3] = 255
    stored = upright.T[np.newaxis]  # how TFDS stores EMNIST
    restored = data.emnist_upright(stored)[0]
    assert np.array_equal(restored, upright)
    assert not np.array_equal(np.rot90(stored[0]).T, upright)


def test_digits_loads_offline():
    digits = data.load_digits()
    assert digits.images.shape == (1797, 8, 8, 1)
    assert digits.images.dtype == np.uint8
    assert digits.images.max() == 255
    assert digits.n_classes == 10


def test_folder_source(image_folder):
    loaded = data.load_dataset(DataConfig(dataset=str(image_folder)))
    assert loaded.images.shape == (18, 8, 8, 1)
    assert loaded.class_names == ("circle", "cross", "square")
    assert np.bincount(loaded.labels).tolist() == [6, 6, 6]
    assert loaded.name == "shapes"


def test_empty_folder_rejected(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(data.DataSourceError, match="has no images"):
        data.load_dataset(DataConfig(dataset=str(tmp_path / "empty")))


def test_npz_with_mapping(tmp_path):
    path = tmp_path / "letters.npz"
    images = np.arange(4 * 3 * 3, dtype=np.uint8).reshape(4, 3, 3)
    np.savez(path, images=images, labels=np.array([0, 1, 1, 0]), mapping=np.array([65, 66]))
    loaded = data.load_dataset(DataConfig(dataset=str(path)))
    assert loaded.images.shape == (4, 3, 3, 1)
    assert loaded.class_names == ("A", "B")
    assert loaded.name == "letters"


def test_npz_split_array_selects_split(tmp_path):
    path = tmp_path / "mixed.npz"
    images = np.zeros((5, 2, 2), dtype=np.uint8)
    np.savez(path, images=images, labels=np.array([0, 1, 0, 1, 1]), split=np.array([0, 0, 1, 1, 1]))
    assert len(data.load_npz(path, split="train")) == 2
    assert len(data.load_npz(path, split="test")) == 3
    with pytest.raises(data.DataSourceError, match="split='validation' is not in"):
        data.load_npz(path, split="validation")


def test_npz_with_class_names(tmp_path):
    path = tmp_path / "pets.npz"
    images = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    np.savez(path, images=images, labels=np.array([0, 1, 2]), class_names=np.array(["a", "b", "c"]))
    assert data.load_npz(path).class_names == ("a", "b", "c")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"values": np.zeros(3)}, "has no images or labels"),
        ({"images": np.zeros((2, 3, 3)), "labels": np.zeros(2, dtype=int)}, "dtype float64"),
        ({"images": np.zeros((2, 9), dtype=np.uint8), "labels": np.zeros(2, dtype=int)}, "shape"),
        ({"images": np.zeros((2, 3, 3), dtype=np.uint8), "labels": np.zeros(3, dtype=int)},
         "one integer label per image"),
    ],
)
def test_npz_not_images_rejected(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(data.DataSourceError, match=message):
        data.load_npz(path)


def test_unknown_dataset_rejected():
    with pytest.raises(data.DataSourceError, match="dataset='imagenet' was not found"):
        data.load_dataset(DataConfig(dataset="imagenet"))


def test_sample_seeded_and_spread():
    digits = data.load_digits()
    first = data.draw_sample(digits, sample_size=100, random_state=7)
    again = data.draw_sample(digits, sample_size=100, random_state=7)
    other = data.draw_sample(digits, sample_size=100, random_state=8)
    assert np.array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)
    assert not np.array_equal(first.images, digits.images[:100])
    assert len(np.unique(first.labels)) == 10


def test_sample_larger_than_split_rejected():
    digits = data.load_digits()
    with pytest.raises(ConfigError, match="sample_size=2000 is larger than the 1797 images"):
        data.draw_sample(digits, sample_size=2000, random_state=0)


def test_features_in_unit_range():
    X = data.to_features(np.array([[[0, 255]]], dtype=np.uint8))
    assert X.dtype == np.float32
    assert X.tolist() == [[0.0, 1.0]]


@pytest.mark.skipif(not (SHARED_DATA / "emnist-balanced-sample.npz").exists(),
                    reason="the real EMNIST sample in ../shared/data is not on this machine")
def test_real_emnist_sample_loads_upright():
    loaded = data.load_npz(SHARED_DATA / "emnist-balanced-sample.npz", split="train")
    assert loaded.images.shape == (9120, 28, 28, 1)
    assert loaded.n_classes == 47
    assert loaded.class_names[10] == "A"


def test_npz_emnist_two_column_mapping(tmp_path):
    path = tmp_path / "emnist-like.npz"
    images = np.zeros((3, 2, 2), dtype=np.uint8)
    mapping = np.array([[1, 98], [0, 97]])
    np.savez(path, images=images, labels=np.array([0, 1, 1]), mapping=mapping)
    assert data.load_npz(path).class_names == ("a", "b")


def test_npz_bad_mapping_rejected(tmp_path):
    path = tmp_path / "bad-mapping.npz"
    np.savez(path, images=np.zeros((2, 2, 2), dtype=np.uint8), labels=np.array([0, 1]),
             mapping=np.zeros((2, 3), dtype=int))
    with pytest.raises(data.DataSourceError, match="mapping of shape \\(2, 3\\)"):
        data.load_npz(path)


@pytest.mark.parametrize("source", ["digits", "folder", "npz"])
def test_single_split_sources_reject_test(source, image_folder, tmp_path):
    if source == "folder":
        dataset = str(image_folder)
    elif source == "npz":
        dataset = str(tmp_path / "plain.npz")
        np.savez(dataset, images=np.zeros((2, 2, 2), dtype=np.uint8), labels=np.array([0, 1]))
    else:
        dataset = "digits"
    with pytest.raises(data.DataSourceError, match="split='test' does not exist"):
        data.load_dataset(DataConfig(dataset=dataset, split="test"))


def test_folder_cache_and_invalidation(image_folder, array_cache, monkeypatch):
    from PIL import Image

    config = DataConfig(dataset=str(image_folder))
    first = data.load_dataset(config)
    assert len(list(array_cache.glob("shapes-train-*/images.npy"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cached arrays should be used")

    with monkeypatch.context() as patch:
        patch.setattr(Image, "open", no_decoding)
        cached = data.load_dataset(config)
    np.testing.assert_array_equal(cached.images, first.images)
    np.testing.assert_array_equal(cached.labels, first.labels)
    assert cached.class_names == first.class_names
    assert cached.name == first.name

    # A new image changes the folder's key, so the folder is decoded again.
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image_folder / "circle" / "new.png")
    assert len(data.load_dataset(config)) == len(first) + 1
    assert len(list(array_cache.glob("shapes-train-*"))) == 2


def test_cache_off(image_folder, array_cache, monkeypatch):
    monkeypatch.setenv("AECLUST_CACHE_DIR", "off")
    data.load_dataset(DataConfig(dataset=str(image_folder)))
    assert not list(array_cache.iterdir())
