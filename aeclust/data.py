"""Data sources: TFDS data sets, scikit-learn digits, image folders and ``.npz`` files.

Every source returns an :class:`ImageSet` of uint8 images with integer labels
and class names; :func:`draw_sample` takes a seeded sample from it and
:func:`to_features` turns it into float32 pixels in [0, 1].
"""

from __future__ import annotations

import logging
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aeclust.config import DEFAULT_SAMPLE_SIZE, ConfigError, DataConfig, source_name

logger = logging.getLogger(__name__)

TFDS_NAMES = {
    "emnist": "emnist/balanced",
    "cifar10": "cifar10",
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
}
BUILTIN_DATASETS = (*TFDS_NAMES, "digits")

EMNIST_BALANCED_CLASSES = tuple(string.digits + string.ascii_uppercase + "abdefghnqrt")
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CLASS_NAMES = {
    "emnist": EMNIST_BALANCED_CLASSES,
    "cifar10": CIFAR10_CLASSES,
    "mnist": tuple(string.digits),
    "fashion_mnist": FASHION_MNIST_CLASSES,
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DataSourceError(ValueError):
    """A data set that cannot be found, read or prepared."""


@dataclass(frozen=True)
class ImageSet:
    """Images with their labels.

    Attributes
    ----------
    images : ndarray of shape (n_samples, height, width, channels), dtype uint8
        The pixels, always with a channel axis.
    labels : ndarray of shape (n_samples,), dtype int64
        Class ids, indexes into ``class_names``.
    class_names : tuple of str
        Human-readable name of each class id.
    name : str
        Short name of the source, used in experiment and model names.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple
    name: str

    @property
    def n_classes(self) -> int:
        """Number of class names."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)


CACHE_ENV = "AECLUST_CACHE_DIR"
"""Environment variable naming the array cache folder; ``off`` turns the cache off."""


def cache_root() -> Path | None:
    """Return the folder of decoded arrays, or None when the cache is off.

    It is ``$AECLUST_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/aeclust``
    or ``~/.cache/aeclust``.
    """
    import os

    value = os.environ.get(CACHE_ENV)
    if value is not None:
        return None if value.strip().lower() in ("", "off", "0", "false") else Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aeclust"


def source_key(config: DataConfig) -> dict | None:
    """Describe the files behind ``config``'s split, or None for sources that load fast anyway.

    Image folders and TFDS data sets are decoded image by image, so their
    arrays are cached. A folder is described by its path and the count,
    total size and latest modification time of its files, so adding,
    replacing or removing an image gives another key.
    """
    if config.dataset in TFDS_NAMES:
        import tensorflow_datasets as tfds

        return {
            "kind": "tfds", "name": TFDS_NAMES[config.dataset], "split": config.split,
            "data_dir": str(Path(config.data_dir).resolve()) if config.data_dir else None,
            "tfds": tfds.__version__,
        }
    path = Path(config.dataset)
    if config.dataset == "digits" or not path.is_dir():
        return None
    n_files = total_size = latest = 0
    for file in path.rglob("*"):
        if file.suffix.lower() in IMAGE_SUFFIXES:
            stat = file.stat()
            n_files += 1
            total_size += stat.st_size
            latest = max(latest, stat.st_mtime_ns)
    return {"kind": "folder", "path": str(path.resolve()), "files": n_files, "bytes": total_size,
            "modified_ns": latest}


def load_dataset(config: DataConfig) -> ImageSet:
    """Load the whole split that ``config`` names, from the array cache when it contains it.

    Decoded image folders and TFDS splits are kept as ``.npy`` files under
    :func:`cache_root`, keyed by :func:`source_key`, and read back memory-mapped.

    Raises
    ------
    DataSourceError
        If the data set is unknown, missing or not an image set.
    """
    root = cache_root()
    key = source_key(config) if root is not None else None
    if key is None:
        return _load_source(config)
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = root / f"{source_name(config.dataset)}-{config.split}-{digest}"
    if (folder / "meta.json").is_file():
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        logger.info("Loaded %s (%s) from the array cache %s.", meta["name"], config.split, folder)
        return ImageSet(
            images=np.load(folder / "images.npy", mmap_mode="r"),
            labels=np.load(folder / "labels.npy"),
            class_names=tuple(meta["class_names"]),
            name=meta["name"],
        )
    image_set = _load_source(config)
    _write_cache(folder, image_set, key)
    return image_set


def _write_cache(folder: Path, image_set: ImageSet, key: dict) -> None:
    """Write the arrays to a temporary folder, then rename it, so readers never see half a cache."""
    import json
    import shutil
    import tempfile

    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".writing-"))
        np.save(tmp / "images.npy", np.ascontiguousarray(image_set.images))
        np.save(tmp / "labels.npy", image_set.labels)
        meta = {"name": image_set.name, "class_names": list(image_set.class_names), "source": key}
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        try:
            tmp.rename(folder)
        except OSError:  # Another process wrote the same cache first.
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        logger.warning("Could not write the array cache %s (%s); loading continues without it.",
                       folder, exc)
        return
    logger.info("Cached the decoded %s arrays in %s.", image_set.name, folder)


def _load_source(config: DataConfig) -> ImageSet:
    if config.dataset == "digits":
        _check_single_split(config, "scikit-learn's digits")
        return load_digits()
    if config.dataset in TFDS_NAMES:
        return load_tfds(config.dataset, split=config.split, data_dir=config.data_dir)

    path = Path(config.dataset)
    if path.suffix == ".npz" and path.is_file():
        return load_npz(path, split=config.split)
    if path.is_dir():
        _check_single_split(config, "an image folder")
        return load_folder(path)
    raise DataSourceError(
        f"dataset={config.dataset!r} was not found: give one of {', '.join(BUILTIN_DATASETS)}, "
        "a folder with one sub-folder of images per class, or an .npz file."
    )


def load_digits() -> ImageSet:
    """Load scikit-learn's bundled 8x8 handwritten digits (1,797 images)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    # The bundled pixels are 0-16 intensities; stretch them to the uint8 range.
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    return ImageSet(
        images=images,
        labels=bunch.target.astype(np.int64),
        class_names=tuple(str(name) for name in bunch.target_names),
        name="digits",
    )


def load_tfds(dataset: str, *, split: str = "train", data_dir: str | None = None) -> ImageSet:
    """Load a TFDS split as arrays, turning EMNIST images upright.

    Parameters
    ----------
    dataset : {"emnist", "cifar10", "mnist", "fashion_mnist"}
        Short name of the data set.
    split : str, default="train"
        TFDS split name.
    data_dir : str or None, default=None
        TFDS data directory; None means TFDS's default (``~/tensorflow_datasets``).
    """
    import tensorflow_datasets as tfds

    tfds_name = TFDS_NAMES[dataset]
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    try:
        builder.download_and_prepare()
    except Exception as exc:  # TFDS raises many types for network and file errors.
        where = data_dir or "the default TFDS data dir (~/tensorflow_datasets)"
        raise DataSourceError(
            f"dataset={dataset!r} ({tfds_name}) is not in {where} and could not be "
            f"downloaded ({type(exc).__name__}: {str(exc)[:200]}). On a machine with internet access run "
            f"`python -c \"import tensorflow_datasets as tfds; tfds.builder('{tfds_name}', "
            "data_dir='DIR').download_and_prepare()\"`, copy DIR here and pass --data-dir DIR."
        ) from exc

    # Prepared data lists its splits; a slice such as "train[:10%]" names its base split.
    known_splits = builder.info.splits
    if known_splits and split.split("[")[0] not in known_splits:
        raise DataSourceError(
            f"split={split!r} does not exist in {tfds_name}: use one of "
            f"{', '.join(sorted(known_splits))}."
        )

    # Batches keep the conversion to numpy vectorised; one element at a time is slow.
    dataset_tf = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    image_batches, label_batches = [], []
    for image_batch, label_batch in tfds.as_numpy(dataset_tf.batch(8192)):
        image_batches.append(image_batch)
        label_batches.append(label_batch)
    images = np.concatenate(image_batches)
    labels = np.concatenate(label_batches).reshape(-1).astype(np.int64)

    if dataset == "emnist":
        images = emnist_upright(images)
    return ImageSet(
        images=_with_channel_axis(images),
        labels=labels,
        class_names=CLASS_NAMES[dataset],
        name=dataset,
    )


def emnist_upright(images: np.ndarray) -> np.ndarray:
    """Turn EMNIST images from TFDS's transposed storage to upright.

    TFDS and the official EMNIST files store each image transposed, so
    swapping the two image axes restores it. A rotation would leave the
    characters turned by a quarter.

    Examples
    --------
    >>> import numpy as np
    >>> stored = np.array([[[1, 2], [3, 4]]])
    >>> emnist_upright(stored)[0].tolist()
    [[1, 3], [2, 4]]
    """
    return np.swapaxes(images, 1, 2)


NPZ_SPLIT_CODES = {"train": 0, "test": 1}
"""Values of an ``.npz`` file's optional ``split`` array."""


def load_npz(path: Path, *, split: str | None = None) -> ImageSet:
    """Load images and labels from an ``.npz`` file.

    The file contains ``images`` (uint8, N x H x W or N x H x W x C) and
    ``labels`` (N integers), and optionally ``class_names`` (strings) or an
    EMNIST-style ``mapping`` of Unicode code points, one per label id. When it
    also contains a ``split`` array (0 = train, 1 = test), only the images of
    ``split`` are kept; without one, ``split`` is ignored.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise DataSourceError(f"dataset={str(path)!r} could not be read as .npz: {exc}") from exc

    missing = [key for key in ("images", "labels") if key not in arrays]
    if missing:
        raise DataSourceError(
            f"dataset={str(path)!r} has no {' or '.join(missing)} array: an image .npz needs "
            "'images' (uint8, N x H x W[ x C]) and 'labels' (N integers)."
        )
    images, labels = arrays["images"], arrays["labels"].reshape(-1)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataSourceError(
            f"dataset={str(path)!r} has images of dtype {images.dtype} and shape {images.shape}: "
            "save them as uint8 with shape N x H x W or N x H x W x C."
        )
    if len(images) != len(labels) or not np.issubdtype(labels.dtype, np.integer):
        raise DataSourceError(
            f"dataset={str(path)!r} has {len(images)} images and {len(labels)} labels of dtype "
            f"{labels.dtype}: give one integer label per image."
        )

    if "split" in arrays and split is not None:
        if split not in NPZ_SPLIT_CODES:
            raise DataSourceError(
                f"split={split!r} is not in {str(path)!r}: its split array knows "
                f"{', '.join(NPZ_SPLIT_CODES)}."
            )
        keep = arrays["split"].reshape(-1) == NPZ_SPLIT_CODES[split]
        images, labels = images[keep], labels[keep]
    elif split not in (None, "train"):
        raise DataSourceError(
            f"split={split!r} does not exist in {str(path)!r}: it has no split array, "
            "so its only split is train."
        )

    n_classes = int(labels.max()) + 1 if len(labels) else 0
    if "class_names" in arrays:
        class_names = tuple(str(name) for name in arrays["class_names"])
    elif "mapping" in arrays:
        class_names = _mapping_names(arrays["mapping"], path)
    else:
        class_names = tuple(str(label) for label in range(n_classes))
    if len(class_names) < n_classes or labels.min(initial=0) < 0:
        raise DataSourceError(
            f"dataset={str(path)!r} has labels outside 0..{len(class_names) - 1}: "
            "give one class name per label id."
        )
    return ImageSet(
        images=_with_channel_axis(images),
        labels=labels.astype(np.int64),
        class_names=class_names,
        name=source_name(str(path)),
    )


def _mapping_names(mapping: np.ndarray, path: Path) -> tuple:
    """Turn an EMNIST mapping into class names.

    The mapping is either one Unicode code point per label id (shape (K,)) or
    EMNIST's own ``label code_point`` table (shape (K, 2)).
    """
    if mapping.ndim == 1:
        return tuple(chr(int(code)) for code in mapping)
    if mapping.ndim == 2 and mapping.shape[1] == 2:
        names = {int(label): chr(int(code)) for label, code in mapping}
        if sorted(names) == list(range(len(names))):
            return tuple(names[label] for label in range(len(names)))
    raise DataSourceError(
        f"dataset={str(path)!r} has a mapping of shape {mapping.shape}: give one code point per "
        "label id (shape K) or rows of label and code point for labels 0..K-1 (shape K x 2)."
    )


def load_folder(path: Path) -> ImageSet:
    """Load a folder with one sub-folder of PNG or JPEG images per class.

    Class names are the sub-folder names in sorted order, and label ids follow
    that order. All images must have the same size and mode.
    """
    from PIL import Image

    root = path.resolve()
    class_dirs = sorted(child for child in path.iterdir() if child.is_dir() and _inside(child, root))
    files_per_class = [
        sorted(
            f for f in class_dir.iterdir()
            if f.suffix.lower() in IMAGE_SUFFIXES and _inside(f, root)
        )
        for class_dir in class_dirs
    ]
    if not any(files_per_class):
        raise DataSourceError(
            f"dataset={str(path)!r} has no images: put PNG or JPEG files in one sub-folder "
            "per class, for example DIR/cat/0001.png."
        )

    images, labels = [], []
    for label, files in enumerate(files_per_class):
        for file in files:
            try:
                with Image.open(file) as image:
                    images.append(np.asarray(image))
            except OSError as exc:
                raise DataSourceError(
                    f"image {str(file)!r} could not be read ({exc}): replace or remove the file."
                ) from exc
            labels.append(label)

    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise DataSourceError(
            f"dataset={str(path)!r} mixes image shapes {sorted(shapes)[:3]}: "
            "resize the images to one size and mode first."
        )
    return ImageSet(
        images=_with_channel_axis(np.stack(images).astype(np.uint8)),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple(class_dir.name for class_dir in class_dirs),
        name=source_name(str(path)),
    )


def resolve_sample_size(sample_size: int | None, n_images: int) -> int:
    """Turn an unset sample size into 5,000, or 0 (all images) when there are fewer.

    Examples
    --------
    >>> resolve_sample_size(None, 1797), resolve_sample_size(None, 60000), resolve_sample_size(100, 1797)
    (0, 5000, 100)
    """
    if sample_size is not None:
        return sample_size
    if n_images <= DEFAULT_SAMPLE_SIZE:
        logger.info(
            "The split has %d images, not more than the default sample of %d; using all of them.",
            n_images, DEFAULT_SAMPLE_SIZE,
        )
        return 0
    return DEFAULT_SAMPLE_SIZE


def _check_single_split(config: DataConfig, what: str) -> None:
    if config.split != "train":
        raise DataSourceError(
            f"split={config.split!r} does not exist: {what} has one split, train. "
            "Put other images in their own folder or .npz file and pass it as --dataset."
        )


def check_classes(image_set: ImageSet) -> None:
    """Raise :class:`DataSourceError` when the images hold fewer than 2 classes."""
    n_present = len(np.unique(image_set.labels))
    if n_present < 2:
        raise DataSourceError(
            f"dataset {image_set.name!r} has {n_present} class(es): clustering against labels "
            "needs images of at least 2 classes."
        )


def draw_sample(image_set: ImageSet, *, sample_size: int, random_state: int) -> ImageSet:
    """Draw ``sample_size`` images without replacement, seeded by ``random_state``.

    The sample comes from the whole set, so the same seed gives the same
    images. ``sample_size=0`` keeps every image, in their original order.
    """
    n_images = len(image_set)
    if sample_size == 0:
        return image_set
    if sample_size > n_images:
        raise ConfigError(
            f"sample_size={sample_size} is larger than the {n_images} images of "
            f"{image_set.name}: give at most {n_images}, or 0 for all of them."
        )
    rng = np.random.default_rng(random_state)
    index = np.sort(rng.choice(n_images, size=sample_size, replace=False))
    return ImageSet(
        images=image_set.images[index],
        labels=image_set.labels[index],
        class_names=image_set.class_names,
        name=image_set.name,
    )


def fingerprint(image_set: ImageSet) -> str:
    """Hash the pixels, labels and class names of ``image_set`` into 16 hex digits."""
    import hashlib

    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(image_set.images.shape).encode())
    digest.update(np.ascontiguousarray(image_set.images).data)
    digest.update(np.ascontiguousarray(image_set.labels, dtype=np.int64).data)
    digest.update("\n".join(image_set.class_names).encode())
    return digest.hexdigest()


def to_features(images: np.ndarray) -> np.ndarray:
    """Flatten uint8 images to float32 rows in [0, 1], shape (n_samples, n_pixels)."""
    features = images.reshape(len(images), -1).astype(np.float32)
    # Dividing in place avoids a second float copy of a full-size split.
    features /= 255.0
    return features


def _inside(path: Path, root: Path) -> bool:
    """Tell whether ``path`` resolves inside ``root``; a link that leads out is skipped with a warning."""
    if path.resolve().is_relative_to(root):
        return True
    logger.warning("Skipping %s: it links outside the data folder %s.", path, root)
    return False


def _with_channel_axis(images: np.ndarray) -> np.ndarray:
    return images[..., np.newaxis] if images.ndim == 3 else images
