"""aeclust: autoencoder against PCA features for clustering images, tracked in MLflow."""

__version__ = "0.2.0"
