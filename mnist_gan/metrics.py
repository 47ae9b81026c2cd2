"""Quality metrics on the evaluator's features and logits: FID, KID, IS, mode coverage, precision/recall, density/coverage."""

from __future__ import annotations

import contextlib
import math
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from .config import LIMITS, MIN_EVAL_SAMPLES
from .data import to_uint8
from .errors import MnistGanError, NoInception
from .evaluator import Evaluator
from .sampling import scoring_sample

# Name, then whether higher is better: the order of every table.
METRICS = {
    "fid": False,
    "kid": False,
    "inception_score": True,
    "classes_covered": True,
    "class_kl": False,
    "precision": True,
    "recall": True,
    "density": True,
    "coverage": True,
}
# A conditional generator's: does it draw the class it is asked for?
CONDITIONAL_METRICS = {"label_accuracy": True, "class_fid": False}
EXTRA_METRICS = {"inception_fid": False}  # with --inception-fid
MAX_EVAL_SAMPLES = LIMITS["eval_samples"][1]
EVAL_SEED = 12345  # the noise of every per-epoch evaluation: epochs are scored on the same z
# torchmetrics gathers a metric's inputs from every process when torch.distributed is running; under torchrun
# rank 0 alone evaluates, on the whole sample, so the metrics must not wait for the other ranks.
LOCAL = False
CHUNK_ELEMENTS = 2**25  # distances computed at a time: 128 MB of float32, whatever the number of images
FAIR_SHARE = 0.5  # a class is covered when it holds at least half its uniform share (5% of samples for 10 classes)


class Precomputed(nn.Module):
    """Lets torchmetrics take features we already computed (one evaluator pass serves every metric)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


@contextlib.contextmanager
def quiet_feature_buffer_warning() -> Iterator[None]:
    """torchmetrics warns that KID and IS keep their features in memory: 10,000 x 128 floats are nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Metric `")
        yield


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    fid = FrechetInceptionDistance(feature=Precomputed(real.shape[1]), sync_on_compute=LOCAL)
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    return fid.compute().item()


def kernel_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """KID (polynomial kernel MMD, unbiased), averaged over subsets."""
    size = min(1000, len(real), len(fake))
    with quiet_feature_buffer_warning():
        kid = KernelInceptionDistance(
            feature=Precomputed(real.shape[1]), subset_size=size, subsets=50, sync_on_compute=LOCAL
        )
    kid.update(real.float(), real=True)  # float32 is ample for a kernel average and 5x faster than float64
    kid.update(fake.float(), real=False)
    return kid.compute()[0].item()


def inception_score(logits: torch.Tensor) -> float:
    """exp(E[KL(p(y|x) || p(y))]) over 10 splits; 10 is the maximum for 10 classes."""
    with quiet_feature_buffer_warning():
        score = InceptionScore(feature=Precomputed(logits.shape[1]), splits=10, sync_on_compute=LOCAL)
    score.update(logits.double())
    return score.compute()[0].item()


def mode_coverage(logits: torch.Tensor, real_labels: torch.Tensor) -> dict[str, float]:
    """How many classes the evaluator sees a fair share of, and KL(generated classes || real labels)."""
    classes = logits.shape[1]
    fake_share = torch.bincount(logits.argmax(1), minlength=classes).double() / len(logits)
    real_share = torch.bincount(real_labels, minlength=classes).double() / len(real_labels)
    covered = int((fake_share >= FAIR_SHARE / classes).sum())
    nonzero = fake_share > 0
    kl = (fake_share[nonzero] * (fake_share[nonzero] / real_share[nonzero]).log()).sum().item()
    return {"classes_covered": covered, "class_kl": kl}


def class_metrics(
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    features: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, float | list[float]]:
    """For images drawn for given labels: how often the evaluator sees the class asked for, and the FID of each
    class's images against that class's test images (class_fids, one per class; class_fid, their mean).

    With few images per class a class's FID is biased upwards (500 samples for 10 classes: 50 each): compare it
    between runs and epochs at the same sample count, and with `evaluate` (10,000) for the final figure."""
    fids = []
    for label in range(int(labels.max()) + 1):
        fake, real = features[labels == label], test_features[test_labels == label]
        fids.append(frechet_distance(real, fake) if len(fake) > 1 and len(real) > 1 else float("nan"))
    measured = [fid for fid in fids if not math.isnan(fid)]  # NaN: a class without two images on either side
    return {
        "label_accuracy": (logits.argmax(1) == labels).double().mean().item(),
        "class_fid": sum(measured) / len(measured) if measured else float("nan"),
        "class_fids": fids,
    }


def row_chunk(columns: int) -> int:
    """Rows per distance chunk so that a chunk holds about CHUNK_ELEMENTS distances."""
    return max(1, CHUNK_ELEMENTS // max(columns, 1))


def kth_neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set (itself excluded)."""
    return torch.cat(
        [
            torch.cdist(chunk, features).kthvalue(k + 1, dim=1).values
            for chunk in features.split(row_chunk(len(features)))
        ]
    )


def real_radii(real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The real manifold's k-NN radii for k=3 and k=5; computed once per real set."""
    real = real.float()
    return kth_neighbour_radii(real, 3), kth_neighbour_radii(real, 5)


def manifold_metrics(
    real: torch.Tensor, fake: torch.Tensor, radii: tuple[torch.Tensor, torch.Tensor] | None = None
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, k=3); density and coverage (Naeem et al. 2020, k=5)."""
    real, fake = real.float(), fake.float()  # neighbour ranks are stable in float32, and cdist is much faster
    real_radii3, real_radii5 = radii or real_radii(real)
    fake_radii3 = kth_neighbour_radii(fake, 3)
    precision_hits, density_hits = 0.0, 0.0
    for chunk in fake.split(row_chunk(len(real))):  # rows: fake, columns: real
        distances = torch.cdist(chunk, real)
        precision_hits += (distances <= real_radii3).any(1).sum().item()
        density_hits += (distances <= real_radii5).sum().item()
    recall_hits, coverage_hits = 0.0, 0.0
    rows = row_chunk(len(fake))
    for chunk, radii5 in zip(real.split(rows), real_radii5.split(rows), strict=True):  # rows: real, columns: fake
        distances = torch.cdist(chunk, fake)
        recall_hits += (distances <= fake_radii3).any(1).sum().item()
        coverage_hits += (distances.min(1).values <= radii5).sum().item()
    return {
        "precision": precision_hits / len(fake),
        "recall": recall_hits / len(real),
        "density": density_hits / (5 * len(fake)),
        "coverage": coverage_hits / len(real),
    }


def check_sample_count(count: int, what: str) -> None:
    """The metrics mean nothing on fewer than MIN_EVAL_SAMPLES images and do not fit in memory beyond MAX."""
    if not MIN_EVAL_SAMPLES <= count <= MAX_EVAL_SAMPLES:
        raise MnistGanError(
            f"{what} holds {count:,} images; the metrics need {MIN_EVAL_SAMPLES:,} to {MAX_EVAL_SAMPLES:,} "
            f"(fewer mean nothing, more do not fit in memory)"
        )


class QualityMeter:
    """Scores generated images against real ones (the test split) in an evaluator's feature space.

    Takes tensors, not paths: evaluation.quality_meter() loads the files. The real side is embedded once.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        real_images: torch.Tensor,
        real_labels: torch.Tensor,
        reference: dict[str, float] | None = None,
    ) -> None:
        self.evaluator, self.test_labels = evaluator, real_labels
        self.reference = reference or {}  # the same metrics for real training images: what a perfect generator scores
        self.test_features, _ = self.evaluator.embed(real_images)
        self.test_radii = real_radii(self.test_features)

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        """Every metric for images in [-1, 1] (or uint8); deterministic (KID's subsets use a fixed seed). With the
        labels the images were drawn for (or real images' own labels), the class metrics too."""
        check_sample_count(len(images), "the sample")
        features, logits = self.evaluator.embed(images)
        if not (torch.isfinite(features).all() and torch.isfinite(logits).all()):  # FID's matrix root would crash
            raise MnistGanError(
                "the images hold NaN or infinite values: the generator is broken (diverged?); "
                "score an earlier checkpoint"
            )
        with torch.random.fork_rng(devices=[]):  # do not disturb the training RNG
            torch.manual_seed(0)
            results = {
                "fid": frechet_distance(self.test_features, features),
                "kid": kernel_distance(self.test_features, features),
                "inception_score": inception_score(logits),
                **mode_coverage(logits, self.test_labels),
                **manifold_metrics(self.test_features, features, self.test_radii),
            }
            if labels is not None:
                results |= class_metrics(self.test_features, self.test_labels, features, logits, labels.cpu())
        return {name: results[name] for name in (*METRICS, *CONDITIONAL_METRICS, "class_fids") if name in results}

    def score_generator(
        self, generator: nn.Module, num_images: int, latent_dim: int, seed: int = EVAL_SEED
    ) -> dict[str, Any]:
        """Scores num_images samples; a conditional generator draws every class in equal share."""
        return self.score(*scoring_sample(generator, num_images, latent_dim, seed))


def fixed_subset(images: torch.Tensor, num_images: int = 10_000) -> torch.Tensor:
    """A fixed random subset (seed 0): the real training images the reference metrics are measured on."""
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:num_images]]


class InceptionFid:
    """The standard FID (Heusel et al. 2017): Inception-v3's 2048 pool features of the images resized to 299 x 299
    in RGB, by torchmetrics over torch-fidelity's port of the original TensorFlow weights. Comparable with
    published figures, unlike the evaluator's FID, but about 6 GFLOP an image: fast on a GPU, minutes on a CPU.
    The real side (the test split, up to 10,000 images) is embedded once."""

    def __init__(self, real_images: torch.Tensor, weights: str = "", device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.metric = load_inception_fid(weights).to(self.device)
        for chunk in as_rgb_uint8(fixed_subset(real_images)).split(INCEPTION_CHUNK):
            self.metric.update(chunk.to(self.device), real=True)

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        self.metric.reset()  # the generated side only: reset_real_features is off
        for chunk in as_rgb_uint8(images).split(INCEPTION_CHUNK):
            self.metric.update(chunk.to(self.device), real=False)
        return {"inception_fid": self.metric.compute().item()}


INCEPTION_CHUNK = 100  # images through Inception at a time: 299 x 299 activations are large


def load_inception_fid(weights: str = "") -> FrechetInceptionDistance:
    """torchmetrics' FID on Inception features, with the weights from `weights` (a .pth file) or, when empty,
    downloaded into torch's hub cache; NoInception says why it cannot be had and how to get it."""
    how = (
        "install torch-fidelity (pip install 'mnist-gan[inception]') and either go online once or pass "
        "--inception-weights (env MNIST_GAN_INCEPTION_WEIGHTS) naming pt_inception-2015-12-05-6726825d.pth"
    )
    if weights and not Path(weights).is_file():
        raise NoInception(f"the Inception weights {weights} do not exist; {how}")
    try:
        with tensors_only_copy(weights, how) as path:
            return FrechetInceptionDistance(
                feature=2048,
                reset_real_features=False,
                feature_extractor_weights_path=path,
                sync_on_compute=LOCAL,
            )
    except NoInception:
        raise
    except ModuleNotFoundError:
        raise NoInception(f"Inception FID needs the torch-fidelity package; {how}") from None
    except Exception as error:  # offline (URLError, OSError), a damaged or foreign weights file...
        raise NoInception(
            f"the Inception weights could not be loaded ({type(error).__name__}: {error}); {how}"
        ) from None


@contextlib.contextmanager
def tensors_only_copy(weights: str, how: str) -> Iterator[str | None]:
    """The weights file read as tensors only (weights_only: a crafted file cannot run code) and saved again to a
    private temporary file, which is what torch-fidelity gets: it loads its file with weights_only=False."""
    if not weights:
        yield None
        return
    try:
        with warnings.catch_warnings():  # torch warns of pickle protocols it was not written with: not the user's
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle that asks for code, a damaged file...
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NoInception(f"{weights} is not a file of Inception weights (tensors only): {reason}; {how}") from None
    if not (isinstance(state, dict) and all(isinstance(value, torch.Tensor) for value in state.values())):
        raise NoInception(f"{weights} is not a file of Inception weights: it holds a {type(state).__name__}; {how}")
    with tempfile.TemporaryDirectory(prefix="mnist_gan_inception_") as folder:
        copy = Path(folder) / "inception.pth"
        torch.save(state, copy)
        yield str(copy)


def as_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] or uint8, grey or RGB, as uint8 RGB: what Inception takes."""
    images = images if images.dtype == torch.uint8 else to_uint8(images)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
