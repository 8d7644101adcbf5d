"""Feature extractors on small seeded data."""

import numpy as np
import pytest

from aeclust import data, models
from aeclust.config import ConfigError


def test_pca_too_many_components_rejected():
    with pytest.raises(ConfigError, match="latent_dim=5 is too large for method=pca"):
        models.fit_pca(np.zeros((10, 4), dtype=np.float32), latent_dim=5, random_state=0)


def test_autoencoder_shapes_and_history():
    X = np.random.default_rng(0).random((60, 16), dtype=np.float32)
    fitted = models.fit_autoencoder(X, latent_dim=3, epochs=2, batch_size=16, random_state=0)
    assert fitted.features.shape == (60, 3)
    assert len(fitted.history["train_loss"]) == 2
    assert len(fitted.history["val_loss"]) == 2
    assert fitted.reconstructions.shape == (6, 16)
    assert fitted.reconstruction_mse > 0


def test_uint8_pixels_match_scaled_floats():
    images = np.random.default_rng(1).integers(0, 256, size=(50, 12), dtype=np.uint8)
    from_uint8 = models.fit_autoencoder(images, latent_dim=3, epochs=2, batch_size=16, random_state=0)
    from_floats = models.fit_autoencoder(
        data.to_features(images), latent_dim=3, epochs=2, batch_size=16, random_state=0
    )
    assert from_uint8.history == from_floats.history
    np.testing.assert_array_equal(from_uint8.features, from_floats.features)
    np.testing.assert_array_equal(from_uint8.reconstructions, from_floats.reconstructions)
    assert from_uint8.reconstruction_mse == from_floats.reconstruction_mse


def test_autoencoder_non_finite_loss_stops():
    X = np.full((40, 8), np.nan, dtype=np.float32)
    with pytest.raises(FloatingPointError, match="training loss became nan at epoch 0"):
        models.fit_autoencoder(X, latent_dim=2, epochs=2, batch_size=8, random_state=0)


def test_init_encoder_mismatch_names_both():
    _, encoder = models.build_autoencoder(16, latent_dim=4, random_state=0)
    with pytest.raises(ConfigError, match="takes 16 pixels to latent_dim=4, but this run needs 16 pixels to latent_dim=8"):
        models.check_init_encoder(encoder, n_features=16, latent_dim=8)
