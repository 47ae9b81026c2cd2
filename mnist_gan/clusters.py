"""Clusters of the training images: the classes an unconditional run with --clusters is conditioned on.

A generator that must draw every kind of image from one continuous z also draws blends between the kinds (a digit
half 4, half 9). Conditioning G and D on clusters of the data, found without labels, gives G a switch between them:
the self-conditioned GAN (Liu et al. 2020) clusters D's features, Logo-GAN (Sage et al. 2018) a pretrained net's;
here k-means of the pixels, which needs nothing trained first (benchmarks/RESULTS.md, section 22).
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import ConfigError

FIT_IMAGES = 10_000  # k-means is fitted on at most this many (a second or two), then each image gets its nearest


def cluster_labels(images: torch.Tensor, clusters: int, seed: int) -> torch.Tensor:
    """Each image's k-means cluster (int64, N), by its pixels; the same for the same images and seed."""
    from sklearn.cluster import KMeans  # here: only such runs pay for importing scikit-learn

    if len(images) < clusters:
        raise ConfigError(f"--clusters {clusters} needs at least as many training images; the data has {len(images)}",
                          "clusters")  # fmt: skip
    pixels = images.flatten(1).numpy().astype(np.float32) / 255
    fitted = np.random.default_rng(seed).choice(len(pixels), min(FIT_IMAGES, len(pixels)), replace=False)
    kmeans = KMeans(clusters, n_init=1, random_state=seed).fit(pixels[np.sort(fitted)])
    return torch.from_numpy(kmeans.predict(pixels)).long()


def cluster_shares(labels: torch.Tensor, clusters: int) -> torch.Tensor:
    """Each cluster's share of the images: G draws the clusters in these proportions."""
    return torch.bincount(labels, minlength=clusters).double().div(len(labels)).float()
