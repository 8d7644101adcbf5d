"""The clusterer: an MLflow pyfunc model that assigns new images to a run's clusters.

It carries everything a new image needs to be clustered like the training
images: the preprocessing (image shape, scaling to [0, 1], flattening), the
encoder, the fitted UMAP step and Gaussian mixture when the run used them,
the centroids (or component means) and each cluster's majority class name.

Input, as a numpy array: a batch of images of the training shape, uint8
(0-255) or float (already in [0, 1]), shape (n, height, width[, channels]).
Input, as a DataFrame (the form the REST server receives): one row per image
with height x width x channels pixel columns in row-major order, values as
above. Output: a DataFrame with ``cluster``, ``class_name`` and ``distance``
(Euclidean distance to the centroid or component mean, in the space that was
clustered: the features, or their UMAP embedding).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow.pyfunc
import numpy as np

logger = logging.getLogger(__name__)

ENCODER_ARTIFACT = "encoder"
CLUSTERER_ARTIFACT = "clusterer"
CONFIG_FILE = "clusterer.json"
CENTERS_FILE = "centers.npy"
STEPS_FILE = "steps.pkl"


class ImageShapeError(ValueError):
    """Images whose shape differs from the training images."""


def save_clusterer_files(
    folder: Path, *, centers, cluster_class_names, image_shape, dataset, manifold=None, mixture=None
) -> Path:
    """Write the centroids and the preprocessing rules that the clusterer loads.

    Parameters
    ----------
    folder : Path
        An empty folder to write ``clusterer.json`` and ``centers.npy`` to.
    centers : ndarray of shape (n_clusters, latent_dim)
        The K-means centroids.
    cluster_class_names : sequence of str
        Majority class name of each cluster.
    image_shape : tuple of int
        (height, width, channels) of the training images.
    dataset : str
        Name of the training data set.
    manifold : umap.UMAP or None, default=None
        The fitted UMAP step, pickled to ``steps.pkl`` with ``mixture``.
    mixture : sklearn.mixture.GaussianMixture or None, default=None
        The fitted Gaussian mixture; None means nearest-centroid assignment.
    """
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / CENTERS_FILE, np.asarray(centers, dtype=np.float32))
    if manifold is not None or mixture is not None:
        with open(folder / STEPS_FILE, "wb") as file:
            pickle.dump({"manifold": manifold, "mixture": mixture}, file)
    config = {
        "image_shape": [int(size) for size in image_shape],
        "scaling": "uint8 pixels are divided by 255; float pixels must already be in [0, 1]",
        "orientation": "upright, as aeclust loads them (EMNIST from TFDS is transposed back)",
        "cluster_class_names": [str(name) for name in cluster_class_names],
        "dataset": dataset,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
    return folder


def prepare_images(images, image_shape) -> np.ndarray:
    """Check a batch of images against the training shape and scale it to float32 rows in [0, 1].

    Raises
    ------
    ImageShapeError
        If the images do not have the training shape.
    """
    expected = tuple(image_shape)
    if hasattr(images, "to_numpy"):  # A DataFrame of flattened pixels.
        images = images.to_numpy()
    images = np.asarray(images)
    n_pixels = int(np.prod(expected))

    if images.ndim == 2 and images.shape[1] == n_pixels:
        images = images.reshape((len(images), *expected))
    elif images.ndim == len(expected) and expected[-1] == 1:
        images = images[..., np.newaxis]
    if images.shape[1:] != expected:
        raise ImageShapeError(
            f"images have shape {images.shape[1:]} but the model expects {expected} "
            "(height, width, channels); resize them first (aeclust predict --resize)."
        )

    if images.dtype == np.uint8 or images.max(initial=0) > 1.0:
        pixels = images.astype(np.float32) / 255.0
    else:
        pixels = images.astype(np.float32)
    return pixels.reshape(len(pixels), -1)


def assign(features: np.ndarray, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Assign each feature row to its nearest centroid; return the ids and distances."""
    squared = (
        np.sum(features ** 2, axis=1, keepdims=True)
        - 2.0 * features @ centers.T
        + np.sum(centers ** 2, axis=1)
    )
    clusters = np.argmin(squared, axis=1)
    distances = np.sqrt(np.maximum(squared[np.arange(len(features)), clusters], 0.0))
    return clusters, distances


class Clusterer(mlflow.pyfunc.PythonModel):
    """Encode images with the run's encoder and assign them to its clusters.

    NOTE: the model is logged without a signature because it takes both arrays and
    DataFrames, so the REST server reports a wrong image shape as a generic error.
    """

    def load_context(self, context):
        import keras

        self.encoder = keras.models.load_model(context.artifacts[ENCODER_ARTIFACT], compile=False)
        folder = Path(context.artifacts[CLUSTERER_ARTIFACT])
        self.config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        self.centers = np.load(folder / CENTERS_FILE, allow_pickle=False)
        self.manifold = self.mixture = None
        if (folder / STEPS_FILE).exists():
            import pickle

            # The run that logged the model wrote this file; it contains scikit-learn and UMAP objects.
            with open(folder / STEPS_FILE, "rb") as file:
                steps = pickle.load(file)
            self.manifold, self.mixture = steps["manifold"], steps["mixture"]

    def predict(self, context, model_input, params=None):
        import pandas as pd

        pixels = prepare_images(model_input, self.config["image_shape"])
        features = np.asarray(self.encoder.predict(pixels, batch_size=1024, verbose=0))
        space = features if self.manifold is None else np.asarray(self.manifold.transform(features))
        clusters, distances = assign(space, self.centers)
        if self.mixture is not None:
            clusters = self.mixture.predict(space)
            distances = np.linalg.norm(space - self.centers[clusters], axis=1)
        names = np.asarray(self.config["cluster_class_names"], dtype=object)
        result = pd.DataFrame(
            {"cluster": clusters.astype(np.int64), "class_name": names[clusters], "distance": distances}
        )
        if params and params.get("embedding"):
            result["embedding"] = list(features)
        return result
