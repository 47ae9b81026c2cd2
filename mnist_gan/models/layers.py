"""Layers shared by the model families."""

from __future__ import annotations

import math

import torch
from torch import nn


class MinibatchStd(nn.Module):
    """Appends one feature: the spread of D's features across each group of `group` images (Karras et al. 2018,
    ProGAN). A generator that draws the same digit again and again gives batches with a small spread, which D
    can then see; the penalty for that pushes G towards variety (higher recall)."""

    def __init__(self, group: int = 4) -> None:
        super().__init__()
        self.group = group

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, rest = features.shape[0], features.shape[1:]
        group = math.gcd(self.group, batch)  # any batch size works; 1 gives a constant 0
        grouped = features.reshape(group, batch // group, *rest)
        # The variance written out: much faster than torch's var() over the first dim on a CPU (RESULTS.md, section 11).
        variance = (grouped - grouped.mean(0)).square().mean(0)
        spread = variance.add(1e-8).sqrt().flatten(1).mean(1)  # (batch // group,)
        spread = spread.repeat(group)  # image i is in group i % (batch // group)
        return torch.cat([features, spread.view(batch, *[1] * len(rest)).expand(batch, 1, *rest[1:])], 1)


class LabelEmbedding(nn.Embedding):
    """A learned vector per class, looked up by class index (B,); class weights (B, num_classes) mix the vectors,
    which is how `interpolate` walks from one class to another."""

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return labels.to(self.weight.dtype) @ self.weight if labels.is_floating_point() else super().forward(labels)


class ClusterChoice(nn.Module):
    """The cluster of a generator trained on k-means clusters of unlabelled images (--clusters): the one given
    (training passes the real images' clusters), else the one z[:, 0] falls in, each cluster holding its share of
    z[:, 0]'s distribution, so that G(z) draws the clusters in their shares of the training images. Either way the
    rest of z is the noise G draws from."""

    def __init__(self, clusters: int) -> None:
        super().__init__()
        self.register_buffer("shares", torch.full((clusters,), 1.0 / clusters))  # set from the data by the trainer

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if labels is None:
            quantile = torch.special.ndtr(z[:, 0].float())  # uniform on (0, 1)
            labels = torch.bucketize(quantile, self.shares.float().cumsum(0)[:-1])
        return z[:, 1:], labels


def conditioning(num_classes: int, clusters: int) -> tuple[ClusterChoice | None, LabelEmbedding | None, int]:
    """A generator's class or cluster input (one of the two at most): the cluster choice, the embedding appended to
    z, and how many numbers the input gains by them (the embedding's, less z's first when it chooses a cluster)."""
    kinds = num_classes + clusters
    choice = ClusterChoice(clusters) if clusters else None
    return choice, LabelEmbedding(kinds, kinds) if kinds else None, kinds - bool(clusters)


def class_input(z: torch.Tensor, embedding: LabelEmbedding | None, labels: torch.Tensor | None,
                clusters: ClusterChoice | None = None) -> torch.Tensor:  # fmt: skip
    """The generator's input: z, with the class's embedding appended for a conditional model (Mirza & Osindero 2014)
    or the cluster's for one trained on clusters."""
    if clusters is not None:
        z, labels = clusters(z, labels)
    if embedding is None:
        return z
    if labels is None:
        raise ValueError("a conditional generator needs the labels to draw")
    return torch.cat([z, embedding(labels).to(z.dtype)], 1)


def projected_logits(net: nn.Sequential, embedding: LabelEmbedding | None, images: torch.Tensor,
                     labels: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
    """D's logits; net ends in the Linear that gives the logit. A conditional D adds the projection discriminator's
    class term <embed(y), features> (Miyato & Koyama 2018): it scores how well an image fits the class it claims,
    not only whether it looks real."""
    if embedding is None:
        return net(images).squeeze(1)
    if labels is None:
        raise ValueError("a conditional discriminator needs the labels")
    features = net[:-1](images)
    return net[-1](features).squeeze(1) + (embedding(labels).to(features.dtype) * features).sum(1)


def projection_embedding(num_classes: int, num_features: int) -> LabelEmbedding | None:
    """D's class vectors, small at the start (as D's other weights) so the class term does not swamp the logit."""
    if not num_classes:
        return None
    embedding = LabelEmbedding(num_classes, num_features)
    nn.init.normal_(embedding.weight, 0.0, 0.02)
    return embedding
