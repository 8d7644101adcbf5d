"""Feature extractors: the study's dense autoencoder, a convolutional one (Keras 3) and PCA."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from aeclust.config import EARLY_STOPPING_PATIENCE, VALIDATION_SPLIT, ConfigError

logger = logging.getLogger(__name__)

# TensorFlow prints several start-up lines per process at its default level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HIDDEN_UNITS = (256, 128)
"""Encoder layer widths before the latent layer; the decoder mirrors them."""

CONV_FILTERS = (32, 64, 128)
"""Filters of the convolutional encoder's stride-2 layers; the decoder mirrors them."""

RECONSTRUCTIONS_KEPT = 16
"""Validation images whose reconstructions are returned for the figure."""


@dataclass
class FittedFeatures:
    """A fitted feature extractor and what it produced.

    Attributes
    ----------
    features : ndarray of shape (n_samples, latent_dim)
        Features of every input row, the ones that are clustered.
    model : object
        The Keras encoder (autoencoders) or the fitted scikit-learn PCA (``pca``).
    history : dict of str to list of float
        Per-epoch ``train_loss`` and ``val_loss`` (empty for PCA).
    reconstruction_mse : float or None
        Mean squared reconstruction error on the validation rows (``ae`` only).
    reconstruction_index : ndarray of int or None
        Rows of ``X`` (validation rows) whose reconstructions are kept (``ae`` only).
    reconstructions : ndarray of shape (n_kept, n_features) or None
        Reconstructed pixels in [0, 1] of those rows (``ae`` only).
    fit_seconds : float
        Wall time of fitting.
    """

    features: np.ndarray
    model: object
    history: dict = field(default_factory=dict)
    reconstruction_mse: float | None = None
    reconstruction_index: np.ndarray | None = None
    reconstructions: np.ndarray | None = None
    fit_seconds: float = 0.0


def limit_threads(threads: int) -> None:
    """Limit TensorFlow to ``threads`` threads per operation and between operations.

    Call it before TensorFlow runs anything in the process.
    """
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def max_latent_dim(method: str, *, n_samples: int, n_features: int) -> int | None:
    """Return the largest latent_dim ``method`` can give, or None when unbounded."""
    if method == "pca":
        return min(n_samples, n_features)
    return None


def check_latent_dim_fits(method: str, latent_dim: int, *, n_samples: int, n_features: int) -> None:
    """Raise :class:`ConfigError` when ``method`` cannot give ``latent_dim`` features."""
    limit = max_latent_dim(method, n_samples=n_samples, n_features=n_features)
    if limit is not None and latent_dim > limit:
        raise ConfigError(
            f"latent_dim={latent_dim} is too large for method={method}: the data has "
            f"{n_samples} samples of {n_features} features, so PCA gives at most {limit} "
            "components. Use a smaller --latent-dim(s)."
        )


def fit_pca(X: np.ndarray, *, latent_dim: int, random_state: int) -> FittedFeatures:
    """Fit PCA with ``latent_dim`` components and project ``X`` onto them."""
    from sklearn.decomposition import PCA

    check_latent_dim_fits("pca", latent_dim, n_samples=X.shape[0], n_features=X.shape[1])
    start = time.perf_counter()
    pca = PCA(n_components=latent_dim, random_state=random_state)
    features = pca.fit_transform(X)
    return FittedFeatures(
        features=features.astype(np.float32),
        model=pca,
        fit_seconds=time.perf_counter() - start,
    )


def build_autoencoder(n_features: int, *, latent_dim: int, random_state: int):
    """Build the dense autoencoder and its encoder.

    The encoder is input -> 256 -> 128 -> latent_dim with ReLU; the decoder is
    128 -> 256 -> input with a sigmoid output, so it reconstructs pixels in
    [0, 1].

    Returns
    -------
    autoencoder, encoder : keras.Model
        The encoder shares its layers with the autoencoder.
    """
    import keras

    def dense(units, activation, index):
        initializer = keras.initializers.GlorotUniform(seed=random_state + index)
        return keras.layers.Dense(units, activation=activation, kernel_initializer=initializer)

    inputs = keras.Input(shape=(n_features,), name="pixels")
    hidden = inputs
    for index, units in enumerate(HIDDEN_UNITS):
        hidden = dense(units, "relu", index)(hidden)
    latent = dense(latent_dim, "relu", len(HIDDEN_UNITS))(hidden)

    decoded = latent
    for index, units in enumerate(reversed(HIDDEN_UNITS)):
        decoded = dense(units, "relu", len(HIDDEN_UNITS) + 1 + index)(decoded)
    outputs = dense(n_features, "sigmoid", 2 * len(HIDDEN_UNITS) + 1)(decoded)

    autoencoder = keras.Model(inputs, outputs, name="autoencoder")
    encoder = keras.Model(inputs, latent, name="encoder")
    return autoencoder, encoder


def build_conv_autoencoder(image_shape, *, latent_dim: int, random_state: int):
    """Build the convolutional autoencoder and its encoder.

    Both take flattened pixels, like the dense autoencoder, so the logged
    encoder and the clusterer accept the same input. The encoder reshapes
    them to ``image_shape``, applies three 3x3 convolutions with stride 2
    and 32, 64 and 128 filters (ReLU), and ends in a linear dense layer of
    ``latent_dim`` units. The decoder mirrors it with transposed
    convolutions and a sigmoid output, cropped back to ``image_shape``.

    Parameters
    ----------
    image_shape : tuple of int
        (height, width, channels) of the images.
    latent_dim : int
        Width of the encoder output.
    random_state : int
        Seeds the weights.

    Returns
    -------
    autoencoder, encoder : keras.Model
        The encoder shares its layers with the autoencoder.
    """
    import keras

    height, width, channels = (int(size) for size in image_shape)
    seeds = iter(range(random_state, random_state + 4 * len(CONV_FILTERS) + 4))

    def init():
        return keras.initializers.GlorotUniform(seed=next(seeds))

    inputs = keras.Input(shape=(height * width * channels,), name="pixels")
    hidden = keras.layers.Reshape((height, width, channels))(inputs)
    for filters in CONV_FILTERS:
        hidden = keras.layers.Conv2D(
            filters, 3, strides=2, padding="same", activation="relu", kernel_initializer=init()
        )(hidden)
    grid = tuple(int(size) for size in hidden.shape[1:])
    latent = keras.layers.Dense(latent_dim, kernel_initializer=init())(keras.layers.Flatten()(hidden))

    decoded = keras.layers.Dense(int(np.prod(grid)), activation="relu", kernel_initializer=init())(latent)
    decoded = keras.layers.Reshape(grid)(decoded)
    for filters in reversed(CONV_FILTERS[:-1]):
        decoded = keras.layers.Conv2DTranspose(
            filters, 3, strides=2, padding="same", activation="relu", kernel_initializer=init()
        )(decoded)
    decoded = keras.layers.Conv2DTranspose(
        channels, 3, strides=2, padding="same", activation="sigmoid", kernel_initializer=init()
    )(decoded)
    extra_rows = int(decoded.shape[1]) - height
    extra_cols = int(decoded.shape[2]) - width
    decoded = keras.layers.Cropping2D(
        ((extra_rows // 2, extra_rows - extra_rows // 2), (extra_cols // 2, extra_cols - extra_cols // 2))
    )(decoded)
    outputs = keras.layers.Flatten()(decoded)

    autoencoder = keras.Model(inputs, outputs, name="conv_autoencoder")
    encoder = keras.Model(inputs, latent, name="conv_encoder")
    return autoencoder, encoder


def check_init_encoder(encoder, *, n_features: int, latent_dim: int) -> None:
    """Raise :class:`ConfigError` unless ``encoder`` maps ``n_features`` pixels to ``latent_dim``."""
    found = (encoder.input_shape[-1], encoder.output_shape[-1])
    if found != (n_features, latent_dim):
        raise ConfigError(
            f"init_encoder takes {found[0]} pixels to latent_dim={found[1]}, but this run needs "
            f"{n_features} pixels to latent_dim={latent_dim}: use an encoder trained on images of "
            "the same size with the same --latent-dim."
        )


def _copy_encoder_weights(source, target) -> None:
    check_init_encoder(source, n_features=target.input_shape[-1], latent_dim=target.output_shape[-1])
    try:
        target.set_weights(source.get_weights())
    except ValueError as exc:
        raise ConfigError(
            f"init_encoder has other layers than this run's encoder ({exc}): "
            "warm-start from an encoder that aeclust logged with the same method."
        ) from exc


def _same_twice(batch):
    """Pair a batch with itself: an autoencoder's input is its target."""
    return batch, batch


def _unit_pixels(batch):
    """Scale uint8 pixels to float32 in [0, 1] as ``data.to_features`` does, and pass other dtypes through."""
    import tensorflow as tf

    if tf.as_dtype(batch.dtype) == tf.uint8:
        return tf.cast(batch, tf.float32) / 255.0
    return batch


def encode(model, X: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Apply a Keras model to the rows of ``X`` one batch at a time; return float32 outputs.

    ``X`` holds float pixels in [0, 1] or uint8 pixels, which are scaled a
    batch at a time. Unlike ``model.predict``, this never converts the whole
    of ``X`` to a tensor, so a full-size split costs only its outputs in memory.
    """
    outputs = [
        np.asarray(model.predict_on_batch(_unit_pixels(X[start:start + batch_size])), dtype=np.float32)
        for start in range(0, len(X), batch_size)
    ]
    return np.concatenate(outputs) if outputs else np.empty((0, *model.output_shape[1:]), np.float32)


def fit_autoencoder(
    X: np.ndarray,
    *,
    latent_dim: int,
    epochs: int,
    batch_size: int,
    random_state: int,
    on_epoch_end=None,
    init_encoder=None,
    learning_rate: float = 1e-3,
    image_shape=None,
) -> FittedFeatures:
    """Train an autoencoder with early stopping and encode ``X``.

    The dense autoencoder of :func:`build_autoencoder` is trained unless
    ``image_shape`` is given, in which case it is the convolutional one of
    :func:`build_conv_autoencoder`.

    A seeded 10% of the rows is held out for validation. Training stops
    after 3 epochs without a lower validation loss and restores the best
    weights.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Float pixels in [0, 1], or uint8 pixels. uint8 rows are scaled to
        [0, 1] a batch at a time, so no float copy of the whole set is made:
        at full size this saves four bytes per pixel.
    latent_dim : int
        Width of the encoder output.
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Mini-batch size.
    random_state : int
        Seeds the split, the weights and the shuffling.
    on_epoch_end : callable or None, default=None
        Called as ``on_epoch_end(epoch, logs)`` after every epoch.
    init_encoder : keras.Model or None, default=None
        An encoder of the same shape whose weights start the training (warm
        start); the decoder starts from scratch.
    learning_rate : float, default=1e-3
        Adam learning rate.
    image_shape : tuple of int or None, default=None
        (height, width, channels) of the images for the convolutional
        autoencoder; None trains the dense one.

    Raises
    ------
    ConfigError
        If ``init_encoder`` has another input size or latent_dim.
    """
    import keras
    import tensorflow as tf

    X = np.asarray(X)
    if X.dtype != np.uint8:
        if X.size and (np.nanmax(X) > 1.0 or np.nanmin(X) < 0.0):
            raise ValueError(
                f"X has values in [{np.nanmin(X):g}, {np.nanmax(X):g}] but the autoencoder needs "
                "pixels in [0, 1] (its output is a sigmoid): pass uint8 images, or scale them with "
                "aeclust.data.to_features."
            )
        X = np.asarray(X, dtype=np.float32)
    tf.random.set_seed(random_state)
    rng = np.random.default_rng(random_state)
    order = rng.permutation(len(X))
    n_val = max(1, int(round(len(X) * VALIDATION_SPLIT)))
    train_index = order[n_val:]
    # The one tensor copy of X keeps its dtype, so uint8 pixels take a quarter of float32's memory.
    pixels = tf.constant(X)
    X_val = _unit_pixels(tf.gather(pixels, order[:n_val])).numpy()

    if image_shape is None:
        autoencoder, encoder = build_autoencoder(
            X.shape[1], latent_dim=latent_dim, random_state=random_state
        )
    else:
        autoencoder, encoder = build_conv_autoencoder(
            image_shape, latent_dim=latent_dim, random_state=random_state
        )
    if init_encoder is not None:
        _copy_encoder_weights(init_encoder, encoder)
    steps = max(1, int(np.ceil(len(train_index) / batch_size)))
    # A compiled step and several steps per call cut the per-batch Python cost.
    autoencoder.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="mse",
        jit_compile=True,
        steps_per_execution=steps,
    )

    # Batches are gathered from the tensor copy by shuffled row numbers, with no shuffle buffer.
    # Measured alternatives: tf.numpy_function kept X alive after the fit, and from_generator
    # took about 8 ms per batch on 2 CPU cores.
    train_data = (
        tf.data.Dataset.from_tensor_slices(train_index)
        .shuffle(len(train_index), seed=random_state, reshuffle_each_iteration=True)
        .batch(batch_size)
        .map(lambda rows: _same_twice(_unit_pixels(tf.gather(pixels, rows))))
    )
    val_data = tf.data.Dataset.from_tensor_slices((X_val, X_val)).batch(batch_size)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=EARLY_STOPPING_PATIENCE, restore_best_weights=True
        )
    ]
    if on_epoch_end is not None:
        callbacks.append(keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end))

    start = time.perf_counter()
    history = autoencoder.fit(
        train_data, validation_data=val_data, epochs=epochs, callbacks=callbacks,
        shuffle=False, verbose=0,
    )
    fit_seconds = time.perf_counter() - start

    for name in ("loss", "val_loss"):
        for epoch, value in enumerate(history.history[name]):
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"training {name} became {value} at epoch {epoch}: check that the pixels are "
                    "scaled to [0, 1] and lower the learning rate or the batch size."
                )
    n_epochs = len(history.history["loss"])
    if n_epochs < epochs:
        logger.info("Early stopping ended training after %d of %d epochs.", n_epochs, epochs)

    reconstruction = encode(autoencoder, X_val)
    features = encode(encoder, X)
    return FittedFeatures(
        features=np.asarray(features, dtype=np.float32),
        model=encoder,
        history={
            "train_loss": [float(v) for v in history.history["loss"]],
            "val_loss": [float(v) for v in history.history["val_loss"]],
        },
        reconstruction_mse=float(np.mean((reconstruction - X_val) ** 2)),
        reconstruction_index=order[:n_val][:RECONSTRUCTIONS_KEPT],
        reconstructions=np.asarray(reconstruction[:RECONSTRUCTIONS_KEPT], dtype=np.float32),
        fit_seconds=fit_seconds,
    )
