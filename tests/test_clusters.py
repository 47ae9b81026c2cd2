"""Unconditional runs conditioned on k-means clusters of the training images (--clusters, MNIST's recipe)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers import quick_config, run
from mnist_gan import Sampler, formats, train
from mnist_gan.clusters import cluster_labels, cluster_shares
from mnist_gan.config import Config
from mnist_gan.data import load_dataset
from mnist_gan.errors import ConfigError
from mnist_gan.models import build_models
from mnist_gan.sampling import classes_of


def purity(clusters: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of images whose cluster's most common digit is their own."""
    return sum(int(torch.bincount(labels[clusters == c], minlength=10).max()) for c in clusters.unique()) / len(labels)


def test_k_means_clusters_of_the_pixels_gather_digits_of_one_kind(data_dir: Path) -> None:
    images, labels = load_dataset("mnist", data_dir)
    images, labels = images[:3000], labels[:3000]
    clusters = cluster_labels(images, 20, seed=0)
    assert clusters.shape == labels.shape and clusters.dtype == torch.int64
    assert set(clusters.tolist()) == set(range(20))
    chance = purity(clusters[torch.randperm(len(clusters), generator=torch.Generator().manual_seed(0))], labels)
    assert purity(clusters, labels) > 0.55 > chance + 0.3  # 20 clusters of digits, not of noise
    assert torch.equal(cluster_labels(images, 20, seed=0), clusters)  # a resumed run finds the same clusters
    shares = cluster_shares(clusters, 20)
    torch.testing.assert_close(shares, torch.bincount(clusters).float() / 3000)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_a_clustered_generator_draws_each_cluster_in_its_share_or_the_one_it_is_given(arch: str) -> None:
    torch.manual_seed(0)
    generator, discriminator = build_models(Config(arch=arch, width=8, clusters=4))
    assert classes_of(generator) == 0  # to its users an unconditional generator: z alone draws
    generator.clusters.shares.copy_(torch.tensor([0.5, 0.3, 0.2, 0.0]))
    z = torch.randn(20_000, 100)
    _, chosen = generator.clusters(z, None)
    torch.testing.assert_close(torch.bincount(chosen, minlength=4) / 20_000, torch.tensor([0.5, 0.3, 0.2, 0.0]),
                               atol=0.015, rtol=0)  # fmt: skip
    generator.eval()
    torch.testing.assert_close(generator(z[:8]), generator(z[:8], chosen[:8]))
    other_first = z[:8].clone()
    other_first[:, 0] = 5.0  # the number that chooses a cluster is not noise G draws from
    torch.testing.assert_close(generator(other_first, chosen[:8]), generator(z[:8], chosen[:8]))
    assert not torch.allclose(generator(z[:8], chosen[:8]), generator(z[:8], (chosen[:8] + 1) % 4))
    images = torch.rand(8, 1, 28, 28) * 2 - 1
    assert not torch.allclose(discriminator(images, chosen[:8]), discriminator(images, (chosen[:8] + 1) % 4))


def test_clusters_serve_only_a_model_without_labels(data_dir: Path) -> None:
    labelled = Config.for_dataset(dataset="mnist", data_dir=str(data_dir))
    unlabelled = Config.for_dataset(dataset="mnist", data_dir=str(data_dir), conditional=False)
    assert (labelled.clusters, labelled.cluster_count, unlabelled.cluster_count) == (50, 0, 50)
    generator, _ = build_models(Config(conditional=True, num_classes=10, clusters=50))
    assert generator.clusters is None and classes_of(generator) == 10
    with pytest.raises(ConfigError, match="latent_dim 2"):
        Config(clusters=5, latent_dim=1)
    assert Config.from_dict({"arch": "mlp"}).clusters == 0  # a checkpoint from before the setting: no clusters


def test_a_run_with_clusters_trains_on_them_and_its_generator_draws_them_in_their_shares(
    data_dir: Path, tmp_path: Path
) -> None:
    run_dir = train(quick_config(tmp_path / "clusters", clusters=10, epochs=1, sample_interval=0, eval_every=1))
    images, _ = load_dataset("mnist", data_dir)
    shares = cluster_shares(cluster_labels(images, 10, seed=1), 10)
    sampler = Sampler.load(run_dir / "generator.pth")
    torch.testing.assert_close(sampler.generator.clusters.shares, shares, atol=0, rtol=0)
    checkpoint = formats.load(run_dir / "best.pt")
    assert checkpoint["config"]["clusters"] == 10
    assert checkpoint["discriminator"]["embed.weight"].shape[0] == 10  # D was told each image's cluster
    result = run("generate", "--run-dir", run_dir, "--num-images", "16", "--out", tmp_path / "grid.png")
    assert result.exit_code == 0, result.output
    assert run("generate", "--run-dir", run_dir, "--label", "3", "--out", tmp_path / "x.png").exit_code == 2
