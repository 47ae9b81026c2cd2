"""Quality metrics on the evaluator's features and logits (FID, KID, IS, mode coverage, precision/recall,
density/coverage), and the meters that score generated images with them during training and in `evaluate`."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import nn

from .config import LIMITS, MIN_EVAL_SAMPLES
from .data import class_names, fixed_subset, load_dataset
from .data.cache import cache_dir, remove_stale
from .datasets import DATASETS
from .errors import MnistGanError, NoEvaluator, NoInception
from .evaluator import FEATURES, Evaluator, check_fits, evaluator_path, load_evaluator
from .files import save_torch

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger(__name__)
# Name, then whether higher is better: the order of every table.
METRICS = {"fid": False, "kid": False, "inception_score": True, "classes_covered": True, "class_kl": False,
           "precision": True, "recall": True, "density": True, "coverage": True}  # fmt: skip
# A conditional generator's: does it draw the class it is asked for?
CONDITIONAL_METRICS = {"label_accuracy": True, "class_fid": False}
EXTRA_METRICS = {"inception_fid": False}  # with --inception-fid
MAX_EVAL_SAMPLES = LIMITS["eval_samples"][1]
EVAL_SEED = 12345  # the noise of every per-epoch evaluation: epochs are scored on the same z
# torchmetrics gathers a metric's inputs from every process when torch.distributed is running; under torchrun
# rank 0 alone evaluates, on the whole sample, so the metrics must not wait for the other ranks.
SYNC_ACROSS_RANKS = False
CHUNK_ELEMENTS = 2**25  # distances computed at a time: 128 MB of float32, whatever the number of images
FAIR_SHARE = 0.5  # a class is covered when it holds at least half its share of the real data (of its test split)
# With fewer real images the k-NN balls hold even blobs (precision 0.76 on the 378 emoji: RESULTS.md, section 17).
FEW_REAL_IMAGES = 2_000


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
    # torchmetrics is imported on use: it pulls in torchvision's models and torch._dynamo (about 2 s of a process's
    # start), which a run that never evaluates does not need
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=Precomputed(real.shape[1]), sync_on_compute=SYNC_ACROSS_RANKS)
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    return fid.compute().item()


def kernel_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """KID (polynomial kernel MMD, unbiased), averaged over subsets."""
    size = min(1000, len(real), len(fake))
    with quiet_feature_buffer_warning():
        from torchmetrics.image.kid import KernelInceptionDistance

        kid = KernelInceptionDistance(
            feature=Precomputed(real.shape[1]), subset_size=size, subsets=50, sync_on_compute=SYNC_ACROSS_RANKS
        )
    kid.update(real.float(), real=True)  # float32 is ample for a kernel average and 5x faster than float64
    kid.update(fake.float(), real=False)
    return kid.compute()[0].item()


def inception_score(logits: torch.Tensor) -> float:
    """exp(E[KL(p(y|x) || p(y))]) over 10 splits; 10 is the maximum for 10 classes."""
    with quiet_feature_buffer_warning():
        from torchmetrics.image.inception import InceptionScore

        score = InceptionScore(feature=Precomputed(logits.shape[1]), splits=10, sync_on_compute=SYNC_ACROSS_RANKS)
    score.update(logits.double())
    return score.compute()[0].item()


def mode_coverage(logits: torch.Tensor, real_labels: torch.Tensor) -> dict[str, float]:
    """How many classes the evaluator sees a fair share of, and KL(generated classes || real labels)."""
    classes = logits.shape[1]
    fake_share = torch.bincount(logits.argmax(1), minlength=classes).double() / len(logits)
    real_share = torch.bincount(real_labels, minlength=classes).double() / len(real_labels)
    covered = int(((fake_share >= FAIR_SHARE * real_share) & (real_share > 0)).sum())
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


def kth_neighbour_radii(features: torch.Tensor, *ks: int) -> list[torch.Tensor]:
    """For each k, the distance from each point to its k-th nearest neighbour in the same set (itself excluded):
    one pass over the distances, keeping the nearest few (topk: 6x faster than a kthvalue pass per k)."""
    nearest = torch.cat(
        [
            torch.cdist(chunk, features).topk(max(ks) + 1, dim=1, largest=False).values
            for chunk in features.split(row_chunk(len(features)))
        ]
    )
    return [nearest[:, k] for k in ks]


def real_radii(real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The real manifold's k-NN radii for k=3 and k=5; computed once per real set."""
    radii3, radii5 = kth_neighbour_radii(real.float(), 3, 5)
    return radii3, radii5


def manifold_metrics(
    real: torch.Tensor, fake: torch.Tensor, radii: tuple[torch.Tensor, torch.Tensor] | None = None
) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, k=3); density and coverage (Naeem et al. 2020, k=5)."""
    real, fake = real.float(), fake.float()  # neighbour ranks are stable in float32, and cdist is much faster
    real_radii3, real_radii5 = radii or real_radii(real)
    (fake_radii3,) = kth_neighbour_radii(fake, 3)
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


@dataclass(frozen=True)
class RealSide:
    """What a meter computes once: the real images' features and k-NN radii (k = 3, 5), and the reference."""

    features: torch.Tensor
    radii3: torch.Tensor
    radii5: torch.Tensor
    reference: dict[str, float] = field(default_factory=dict)


class QualityMeter:
    """Scores generated images against real ones (the test split) in an evaluator's feature space.

    Takes tensors, not paths: quality_meter() loads the files. The real side is embedded once.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        real_images: torch.Tensor,
        real_labels: torch.Tensor,
        reference: dict[str, float] | None = None,
        real_side: RealSide | None = None,
    ) -> None:
        self.evaluator, self.test_labels = evaluator, real_labels
        classes = evaluator.shape["num_classes"]
        self.class_shares = torch.bincount(real_labels, minlength=classes).double() / max(1, len(real_labels))
        self.reference = reference or {}  # the same metrics for real training images: what a perfect generator scores
        if real_side is None:  # the real images' features and k-NN radii: computed once, or read from the cache
            features = self.evaluator.embed(real_images)[0]
            real_side = RealSide(features, *real_radii(features))
        self.test_features, self.test_radii = real_side.features, (real_side.radii3, real_side.radii5)

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


def sample_shares(meters: Sequence[Meter]) -> torch.Tensor | None:
    """The class shares a conditional generator is scored in: the test split's own, the mix its features and the
    real data's reference come in. A balanced sample of unbalanced data scores the class mix as well as the images:
    on MNIST (classes 8.9% to 11.4% of the test split) it added 0.1 to 0.9 to the FID of the same generator (median
    0.6 over six noise seeds; benchmarks/RESULTS.md, section 22); on a folder (the emoji: 60% one class) far more.
    Balanced data (Fashion-MNIST, CIFAR-10) draws its classes in equal shares either way."""
    return next((meter.class_shares for meter in meters if isinstance(meter, QualityMeter)), None)


class Meter(Protocol):
    """What scores a sample during training: QualityMeter, or the Inception FID (inception.py)."""

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]: ...


def quality_meter(
    dataset: str, data_dir: str | Path, device: torch.device | str = "cpu", path: Path | None = None,
    download: bool = True, background: str = "white", img_size: int = 0,
) -> QualityMeter:  # fmt: skip
    """The dataset's evaluator (or the one at path) and test split, ready to score generated images; NoEvaluator
    when there is none, or it does not fit the data. The real side and its reference are at img_size, the
    generator's (0: the data's own), as metric suites do: else a 32 px copy of the data scores as a blurred one."""
    path = path or evaluator_path(dataset, data_dir)
    evaluator, metadata = load_evaluator(dataset, path, device, data_dir)
    load = {"download": download, "background": background, "img_size": img_size}
    test_images, test_labels = load_dataset(dataset, data_dir, train=False, **load)
    names = class_names(dataset, data_dir)
    data = {"dataset": dataset, "data_dir": data_dir, "channels": test_images.shape[1], "names": names,
            "classes": len(names) if names is not None else int(test_labels.max()) + 1}  # fmt: skip
    check_fits(evaluator, metadata, path, data)
    if len(test_images) < FEW_REAL_IMAGES:
        log.warning(f"the test split holds {len(test_images):,} images: too few for precision and density, which "
                    f"can call blobs good here; read FID, recall and coverage")  # fmt: skip
    size = test_images.shape[-1]
    # The evaluator's reference is at the data's size; at another, training images at it are scored and cached.
    train = None if size == DATASETS[dataset].size else fixed_subset(load_dataset(dataset, data_dir, **load)[0])
    key = real_side_key(path, test_images, test_labels, *([] if train is None else [train]))
    cached = cache_dir(data_dir) / f"real_side_{dataset}_{size}px_{key}.pt"
    real_side = read_real_side(cached, len(test_images))
    reference = real_side.reference if real_side is not None else metadata.get("reference")
    meter = QualityMeter(evaluator, test_images, test_labels, reference, real_side)
    if real_side is None:
        meter.reference = meter.score(train) if train is not None else meter.reference
        with contextlib.suppress(MnistGanError):  # a cache that cannot be written costs the computation next time
            save_torch({"features": meter.test_features, "radii3": meter.test_radii[0],
                        "radii5": meter.test_radii[1], "reference": meter.reference}, cached)  # fmt: skip
            remove_stale(cached.parent, f"real_side_{dataset}_{size}px_*.pt", f"_{key}.pt")  # another evaluator's
    return meter


def real_side_key(evaluator_file: Path, *real: torch.Tensor) -> str:
    """Changes with the evaluator's weights or the real images and labels: the embedding of a test split is cached
    under it (about 5 s of every run's start, and of every `evaluate`)."""
    digest = hashlib.sha256(Path(evaluator_file).read_bytes())
    for tensor in real:  # every pixel: a changed image is another real side
        digest.update(f"{tuple(tensor.shape)}".encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def read_real_side(path: Path, count: int) -> RealSide | None:
    """A cached real side, or None when it is missing or not what we write (checked, never trusted)."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        side = RealSide(saved["features"], saved["radii3"], saved["radii5"], saved["reference"])
    except Exception:  # damaged or foreign: computed again
        return None
    tensors = (side.features, side.radii3, side.radii5)
    shapes_fit = side.features.shape == (count, FEATURES) and side.radii3.shape == side.radii5.shape == (count,)
    numbers = isinstance(side.reference, dict) and all(isinstance(v, int | float) for v in side.reference.values())
    if shapes_fit and numbers and all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in tensors):
        return side
    return None


def quality_meters(config: Config, device: torch.device) -> list[Meter]:
    """The meters of a run's per-epoch metrics: the evaluator's, and with --inception-fid the standard FID. Whichever
    cannot be had (no fitting evaluator; no Inception weights offline) is left out with one warning; none at all
    (or --eval-every 0) turns the metrics off."""
    if not config.eval_every:
        return []
    meters: list[Meter] = []
    try:
        meters.append(quality_meter(config.dataset, config.data_dir, device, download=config.download,
                                    background=config.background, img_size=config.img_size))  # fmt: skip
    except NoEvaluator as error:
        log.warning(f"quality metrics are off: {error}")
    if config.inception_fid:
        from .inception import inception_meter  # torch-fidelity: only when asked for

        try:
            meters.append(inception_meter(config.dataset, config.data_dir, config.inception_weights, device,
                                          download=config.download, background=config.background,
                                          img_size=config.img_size))  # fmt: skip
        except NoInception as error:
            log.warning(f"Inception FID is off: {error}")
    return meters
