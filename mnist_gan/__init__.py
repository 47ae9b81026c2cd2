"""mnist_gan: train GANs on MNIST-like datasets, watch them in TensorBoard, render and measure what they make."""

__version__ = "0.1.0"

from .config import Config  # noqa: E402
from .errors import MnistGanError  # noqa: E402
from .models import build_models  # noqa: E402
from .trainer import resume, train  # noqa: E402
from .sampling import generate, plot_checkpoint, sample_images  # noqa: E402

__all__ = ["Config", "MnistGanError", "build_models", "train", "resume", "generate", "plot_checkpoint",
           "sample_images", "__version__"]
