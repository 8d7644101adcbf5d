"""Cluster new images with a logged or registered clusterer and write the assignments."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from aeclust import serving, tracking
from aeclust.data import IMAGE_SUFFIXES, DataSourceError

logger = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".csv", ".parquet")


def read_images(path: Path) -> tuple[list[str], list[np.ndarray]]:
    """Read the images to cluster: a folder (searched recursively), one image file or an ``.npz``.

    Returns
    -------
    ids : list of str
        The file path relative to the folder, the file name, or the row number of the ``.npz``.
    images : list of ndarray
        One uint8 array per image, (height, width) or (height, width, channels).
    """
    from PIL import Image

    if path.suffix == ".npz" and path.is_file():
        with np.load(path, allow_pickle=False) as archive:
            if "images" not in archive.files:
                raise DataSourceError(f"input={str(path)!r} has no 'images' array.")
            images = archive["images"]
        return [str(row) for row in range(len(images))], list(images)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        files, root = [path], path.parent
    elif path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        root = path
    else:
        raise DataSourceError(
            f"input={str(path)!r} was not found or is not an image folder, PNG/JPEG file or .npz file."
        )
    if not files:
        raise DataSourceError(f"input={str(path)!r} has no PNG or JPEG images.")

    images = []
    for file in files:
        with Image.open(file) as image:
            images.append(np.asarray(image))
    return [str(file.relative_to(root)) for file in files], images


def fit_shape(images: list[np.ndarray], image_shape, *, resize: bool, ids=None) -> np.ndarray:
    """Stack images into (n, height, width, channels), resizing them only when ``resize`` is set.

    Pixel values keep their type: uint8 (0-255) or float (already in [0, 1]).

    Raises
    ------
    serving.ImageShapeError
        When an image has another shape and ``resize`` is not set.
    """
    from PIL import Image

    height, width, channels = image_shape
    ids = ids if ids is not None else [str(index) for index in range(len(images))]
    fitted = []
    for image_id, image in zip(ids, images):
        image = image[..., np.newaxis] if image.ndim == 2 else image
        if image.shape == (height, width, channels):
            fitted.append(image)
            continue
        if not resize:
            raise serving.ImageShapeError(
                f"input image {image_id!r} has shape {image.shape} but the model expects "
                f"{(height, width, channels)} (height, width, channels): pass --resize to "
                "resize and convert the images."
            )
        if image.dtype != np.uint8:
            image = np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        pil = pil.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
        pixels = np.asarray(pil)
        fitted.append(pixels[..., np.newaxis] if pixels.ndim == 2 else pixels)
    return np.stack(fitted)


def predict_images(
    model_uri: str, input_path: Path, output_path: Path, *, resize: bool = False, embedding: bool = False
):
    """Cluster the images at ``input_path`` with the clusterer ``model_uri``; write ``output_path``.

    The output is CSV, or Parquet when ``output_path`` ends in ``.parquet``,
    with the columns ``id``, ``cluster``, ``class_name`` and ``distance``,
    and ``embedding`` (the encoder output) when ``embedding`` is set.
    """
    if output_path.suffix not in OUTPUT_SUFFIXES:
        raise DataSourceError(
            f"output={str(output_path)!r} has an unknown format: end it in .csv or .parquet."
        )
    model = tracking.load_pyfunc(model_uri)
    image_shape = model.unwrap_python_model().config["image_shape"]
    ids, images = read_images(input_path)
    batch = fit_shape(images, image_shape, resize=resize, ids=ids)

    if embedding:
        # The pyfunc wrapper passes params only to models logged with a params schema,
        # so the embedding is asked from the Python model directly.
        result = model.unwrap_python_model().predict(None, batch, params={"embedding": True})
        result["embedding"] = [json.dumps([round(float(v), 6) for v in row]) for row in result["embedding"]]
    else:
        result = model.predict(batch)
    result.insert(0, "id", ids)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    if output_path.suffix == ".parquet":
        result.to_parquet(output_path, index=False)
    else:
        result.to_csv(output_path, index=False)
    logger.debug("Clustered %d images into %s.", len(result), output_path)
    return result
