"""The standard FID (Heusel et al. 2017) on Inception-v3 features, through torchmetrics and torch-fidelity: an
optional meter (--inception-fid), comparable with published figures."""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torchmetrics.image.fid import FrechetInceptionDistance

from .data import fixed_subset, load_dataset, to_uint8
from .errors import NoInception

INCEPTION_CHUNK = 100  # images through Inception at a time: 299 x 299 activations are large


def inception_meter(
    dataset: str,
    data_dir: str | Path,
    weights: str = "",
    device: torch.device | str = "cpu",
    download: bool = True,
    background: str = "white",
    img_size: int = 0,
) -> InceptionFid:
    """The standard FID against the dataset's test split at the generator's img_size (as quality_meter does;
    NoInception when Inception cannot be had); the weights are loaded before the test split is read, so that a
    missing file fails fast."""
    metric = load_inception_fid(weights)
    test_images, _ = load_dataset(
        dataset, data_dir, train=False, download=download, background=background, img_size=img_size
    )
    return InceptionFid(test_images, metric, device)


class InceptionFid:
    """The standard FID (Heusel et al. 2017): Inception-v3's 2048 pool features of the images resized to 299 x 299
    in RGB, by torchmetrics over torch-fidelity's port of the original TensorFlow weights. Comparable with
    published figures, unlike the evaluator's FID, but about 6 GFLOP an image: fast on a GPU, minutes on a CPU.
    The real side (the test split, up to 10,000 images) is embedded once."""

    def __init__(
        self, real_images: torch.Tensor, metric: FrechetInceptionDistance, device: torch.device | str = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.metric = metric.to(self.device)
        # Channels-last convolutions: Inception 1.5-1.9x as fast on a CPU (oneDNN), the same features to 1e-6
        # (benchmarks/RESULTS.md, section 24); not measured on a GPU.
        self.metric.inception.to(memory_format=torch.channels_last)
        for chunk in as_rgb_uint8(fixed_subset(real_images)).split(INCEPTION_CHUNK):
            self.metric.update(chunk.to(self.device), real=True)

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        self.metric.reset()  # the generated side only: reset_real_features is off
        for chunk in as_rgb_uint8(images).split(INCEPTION_CHUNK):
            self.metric.update(chunk.to(self.device), real=False)
        return {"inception_fid": self.metric.compute().item()}


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
                sync_on_compute=False,  # under torchrun rank 0 alone evaluates: no waiting for the others
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
