"""The notebook's study without aeclust, as a baseline for bench_study.py.

A plain reimplementation of the method the notebook describes. It decodes
the images and draws a seeded sample. For each latent dimension it trains a
dense Keras autoencoder (256-128-dim, ReLU, sigmoid output, Adam, MSE, plain
``fit`` with a 10% validation split and early stopping with patience 3) and
fits PCA of the same size. It clusters both with K-means (``n_init=10``) and
scores silhouette (scikit-learn) and ARI. No tracking, no figures, no t-SNE.

Usage::

    python benchmarks/notebook_method.py --dataset FOLDER_OR_NPZ --output scores.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DIMS = (16, 32, 64, 128, 256)


def load_images(dataset: str):
    """Decode every image of a class-per-folder tree, or read an .npz file's train split."""
    path = Path(dataset)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            keep = archive["split"] == 0 if "split" in archive.files else slice(None)
            return archive["images"][keep], archive["labels"][keep]
    from PIL import Image

    images, labels = [], []
    for label, class_dir in enumerate(sorted(p for p in path.iterdir() if p.is_dir())):
        for file in sorted(class_dir.iterdir()):
            with Image.open(file) as image:
                images.append(np.asarray(image))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def autoencoder_features(X, dim, seed):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(X.shape[1],))
    hidden = keras.layers.Dense(256, activation="relu")(inputs)
    hidden = keras.layers.Dense(128, activation="relu")(hidden)
    latent = keras.layers.Dense(dim, activation="relu")(hidden)
    decoded = keras.layers.Dense(128, activation="relu")(latent)
    decoded = keras.layers.Dense(256, activation="relu")(decoded)
    outputs = keras.layers.Dense(X.shape[1], activation="sigmoid")(decoded)
    autoencoder = keras.Model(inputs, outputs)
    encoder = keras.Model(inputs, latent)
    autoencoder.compile(optimizer="adam", loss="mse")
    autoencoder.fit(
        X, X, epochs=20, batch_size=256, validation_split=0.1, verbose=0,
        callbacks=[keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)],
    )
    return encoder.predict(X, verbose=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--sample-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, silhouette_score

    start = time.perf_counter()
    images, labels = load_images(args.dataset)
    rng = np.random.default_rng(args.seed)
    index = np.sort(rng.choice(len(images), size=args.sample_size, replace=False))
    X = images[index].reshape(args.sample_size, -1).astype(np.float32) / 255.0
    y = labels[index]
    n_clusters = len(np.unique(labels))

    scores = []
    for method in ("ae", "pca"):
        for dim in DIMS:
            if method == "ae":
                features = autoencoder_features(X, dim, args.seed)
            else:
                features = PCA(n_components=dim, random_state=args.seed).fit_transform(X)
            predicted = KMeans(n_clusters=n_clusters, n_init=10, random_state=args.seed).fit_predict(features)
            scores.append({
                "method": method, "latent_dim": dim,
                "ari": float(adjusted_rand_score(y, predicted)),
                "silhouette": float(silhouette_score(features, predicted)),
            })
    result = {"seconds": time.perf_counter() - start, "scores": scores}
    Path(args.output).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
