"""The run configuration: one frozen dataclass, saved in every checkpoint and in TensorBoard's hparams.

Each field carries its help text: the CLI makes one `main` flag of each field from it, so adding a flag is adding a
field here. Values that live in other tables (dataset recipes, limits, choices) are added to the help by the CLI.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .datasets import DATASETS, recipe_for
from .errors import ConfigError

ARCHITECTURES = ("dcgan", "mlp")
PRECISIONS = ("auto", "fp32", "bf16")
LOSSES = ("ns", "hinge")  # non-saturating (Goodfellow et al. 2014); hinge (Lim & Ye 2017, SN-GAN, BigGAN)
LR_SCHEDULES = ("constant", "linear")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENTATIONS = ("color", "translation", "cutout")  # DiffAugment's transforms (augment.py)
CHOICES = {"dataset": tuple(DATASETS), "arch": ARCHITECTURES, "precision": PRECISIONS, "loss": LOSSES,
           "lr_schedule": LR_SCHEDULES, "device": DEVICES}  # fmt: skip

# Inclusive bounds; beyond them a run crashes (BatchNorm needs 2 images a batch; the k-NN metrics need
# 100 samples to mean anything) or a crafted checkpoint would make us allocate gigabytes before failing.
MIN_EVAL_SAMPLES = 100
LIMITS: dict[str, tuple[int, int]] = {
    "epochs": (1, 1_000_000),
    "batch_size": (2, 65_536),
    "latent_dim": (1, 4096),
    "img_size": (8, 256),
    "width": (1, 1024),
    "depth": (1, 8),
    "max_batches": (0, 2**31 - 1),
    "log_every": (1, 2**31 - 1),
    "sample_interval": (0, 2**31 - 1),
    "eval_every": (0, 1_000_000),
    "eval_samples": (MIN_EVAL_SAMPLES, 100_000),
    "keep_last": (0, 1_000_000),
    "r1_every": (1, 1_000_000),
    "num_classes": (0, 100_000),
    "clusters": (0, 1000),
    "seed": (0, 2**31 - 1),
    "time_budget": (0, 10_000_000),  # minutes
    "r1": (0, 10_000),
}
OPEN_BELOW_ONE = ("b1", "b2", "ema_decay", "lr_d")  # in [0, 1)
# Settings added after the first release, and the value that means "as before they existed": a saved config without
# them (an older checkpoint) is rebuilt with these, not with today's defaults.
BEFORE_FIELD_EXISTED = {
    "minibatch_std": False, "r1": 0.0, "r1_every": 1, "loss": "ns", "lr_schedule": "constant", "lr_d": 0.0,
    "conditional": False, "ema_span": 1 / 9, "augment": "", "depth": 1, "clusters": 0,
}  # fmt: skip
FIELD_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool}

# Fields that define the model or its data: a resumed run may not change them.
MODEL_FIELDS = (
    "dataset", "arch", "latent_dim", "width", "depth", "img_size", "channels", "spectral_norm", "minibatch_std",
    "conditional", "num_classes", "clusters", "background",
)  # fmt: skip
NOT_FLAGS = ("num_classes",)  # counted from the data, never given


def option(default: Any, help: str, **cli: Any) -> Any:
    """A field with its --help text (and any other typer.Option settings, such as an envvar)."""
    return dataclasses.field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class Config:
    # Data
    dataset: str = option("mnist", "Dataset.")
    data_dir: str = option("data", "Dataset root (torchvision layout); downloaded there if missing.",
                           envvar="MNIST_GAN_DATA_DIR")  # fmt: skip
    download: bool = option(True, "Download the dataset into --data-dir when it is missing.")
    img_size: int = option(0, "Image side in pixels; 0: the dataset's own.")
    channels: int = option(0, "Image channels; 0: the dataset's own.")
    background: str = option("white", "Colour behind transparent pixels of a folder's images: white, black or R,G,B "
                                      "(0-255 each).")  # fmt: skip

    # Model: every dataset's recipe (datasets.py) picks the DCGAN; the MLP is the simplest GAN, and the fastest step
    arch: str = option("mlp", "Architecture.")
    latent_dim: int = option(100, "Size of the noise vector z.")
    width: int = option(32, "DCGAN base channel count (ignored by mlp).")
    depth: int = option(2, "DCGAN convolutions per image size in G and D: 1 is the paper's DCGAN, 2 adds a 3x3 one "
                           "after each stride-2 layer (more detail in the same minutes). Ignored by mlp.")  # fmt: skip
    spectral_norm: bool = option(False, "Spectral normalisation of D's layers (Miyato et al. 2018).")
    minibatch_std: bool = option(True, "D also sees the spread of its features over small groups of images "
                                       "(ProGAN): more variety.")  # fmt: skip
    conditional: bool = option(False, "Class-conditional G and D (labelled data): `generate --label 7` draws the "
                                      "class asked for. On by default where the data has classes (a folder: "
                                      "when its images sit in class sub-folders), off for CelebA.")  # fmt: skip
    num_classes: int = option(0, "Classes of a conditional model; 0: counted from the data when the run starts.")
    clusters: int = option(0, "Without labels (--no-conditional): G and D are conditioned on this many k-means "
                              "clusters of the training images, and G draws each in its share of the data (a "
                              "self-conditioned GAN): distinct kinds of image, not blends of them. 0: off.")  # fmt: skip

    # Optimisation: Adam at a higher learning rate than the usual 2e-4 (measured: benchmarks/RESULTS.md)
    epochs: int = option(50, "Passes over the training set.")
    batch_size: int = option(256, "Images per batch; per process under torchrun, where --lr is not scaled for you.")
    lr: float = option(2e-3, "Adam learning rate, for G and D.")
    b1: float = option(0.0, "Adam beta1.")
    b2: float = option(0.99, "Adam beta2.")
    lr_d: float = option(0.0, "Adam learning rate of D; 0: the same as --lr (two time-scales when it differs).")
    lr_schedule: str = option("linear", "constant, or linear: both learning rates fall to 0 at the end of the run "
                                        "(its epochs, or --time-budget if sooner).")  # fmt: skip
    loss: str = option("ns", "Loss: ns (non-saturating, on logits) or hinge.")
    augment: str = option("", "DiffAugment: the same random transforms of real and generated images before D, "
                              "comma-separated (color, translation, cutout); more from few images. '': off.")  # fmt: skip
    r1: float = option(1.0, "Weight gamma of the R1 penalty on D's gradient at real images; 0: off.")
    r1_every: int = option(4, "Apply R1 on one step in this many, as many times as strong (lazy R1: the same "
                                "effect, cheaper).")  # fmt: skip
    ema_decay: float = option(0.999, "Decay of the generator's weight average used for samples and export, at "
                                     "most; 0: off.")  # fmt: skip
    ema_span: float = option(1 / 9, "How far back the weight average reaches, as a fraction of the steps so far "
                                    "(until --ema-decay caps it).")  # fmt: skip
    precision: str = option("auto", "auto (bf16 where the hardware runs it fast), fp32 or bf16.")
    compile: bool = option(False, "torch.compile G (and D when --r1 is 0): a slow start, then faster steps "
                                  "(GPUs, long runs).")  # fmt: skip
    sync_batchnorm: bool = option(False, "Under torchrun on GPUs: BatchNorm statistics over every rank's batch.")
    max_batches: int = option(0, "Cap on batches per epoch, for quick runs; 0: no cap.")
    time_budget: float = option(0.0, "Minutes of training (summed over resumes) after which the run ends cleanly "
                                     "(final evaluation, checkpoint, generator.pth); resumable. 0: none.")  # fmt: skip

    # Logging, evaluation and output
    run_dir: str = option("", "Folder for events, checkpoints and images; default: runs/<date_time>.")
    log_every: int = option(10, "Steps between TensorBoard scalars.")
    sample_interval: int = option(200, "Batches between saved sample grids; 0: only per epoch.")
    eval_every: int = option(1, "Epochs between quality evaluations (and the last epoch); 0: off.")
    eval_samples: int = option(500, "Generated images per evaluation during training.")
    inception_fid: bool = option(False, "Also the standard FID on Inception-v3 features (needs torch-fidelity; "
                                        "slow on a CPU).")  # fmt: skip
    inception_weights: str = option("", "Weights file for --inception-fid; default: downloaded.",
                                    envvar="MNIST_GAN_INCEPTION_WEIGHTS")  # fmt: skip
    keep_last: int = option(3, "Per-epoch checkpoints to keep; 0: all. best.pt and generator.pth always stay.")
    seed: int = option(0, "Random seed.")
    device: str = option("auto", "Device.")

    def __post_init__(self) -> None:
        check_types(self)
        for name, choices in CHOICES.items():
            check_choice(name, getattr(self, name), choices)
        spec = DATASETS[self.dataset]
        # Fill the dataset's defaults so a saved config is explicit.
        object.__setattr__(self, "img_size", self.img_size or spec.size)
        object.__setattr__(self, "channels", self.channels or spec.channels)
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:  # NaN fails too
                raise ConfigError(f"{name} must be between {low:,} and {high:,}, got {value!r}", name)
        if self.channels != spec.channels:
            raise ConfigError(
                f"{self.dataset} images have {spec.channels} channel(s); channels cannot be {self.channels}", "channels"
            )
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr must be in (0, 1), got {self.lr}", "lr")
        if not 0 < self.ema_span <= 1:
            raise ConfigError(f"ema_span must be in (0, 1], got {self.ema_span}", "ema_span")
        for name in OPEN_BELOW_ONE:
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}", name)
        background_colour(self.background)
        unknown = [name for name in self.augmentations if name not in AUGMENTATIONS]
        if unknown:
            raise ConfigError(f"augment: unknown transform(s) {', '.join(unknown)}; choose from "
                              f"{', '.join(AUGMENTATIONS)}, comma-separated", "augment")  # fmt: skip
        if self.cluster_count and self.latent_dim < 2:
            raise ConfigError("clusters need latent_dim 2 or more (z's first number chooses the cluster)", "clusters")
        if self.conditional and self.num_classes == 1:
            raise ConfigError("a conditional model needs at least 2 classes", "conditional")
        if self.arch == "dcgan" and not dcgan_supports(self.img_size):
            raise ConfigError(
                f"dcgan needs an image size that is a multiple of 4 up to 32, or 64, 128 or 256; got {self.img_size}",
                "img_size",
            )

    @classmethod
    def for_dataset(cls, **given: Any) -> Config:
        """A new run's config: the settings given, the dataset's recipe for the others, else the defaults."""
        dataset = given.get("dataset", cls.dataset)
        # an unknown name fails in __post_init__
        recipe = recipe_for(dataset, given.get("data_dir", cls.data_dir)) if dataset in DATASETS else {}
        return cls(**{**recipe, **given})

    @property
    def lr_discriminator(self) -> float:
        return self.lr_d or self.lr  # --lr-d 0: D learns at G's rate

    @property
    def cluster_count(self) -> int:
        """The k-means clusters this run's model is conditioned on: --clusters without labels; none with them."""
        return 0 if self.conditional else self.clusters

    @property
    def augmentations(self) -> tuple[str, ...]:
        """--augment's transforms in order: 'color, cutout' -> ('color', 'cutout'); '' -> none."""
        return tuple(name.strip() for name in self.augment.split(",") if name.strip())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Rebuild a saved config; keys from other versions are ignored so old checkpoints still load, and a
        setting added since then takes the value that reproduces how the old run was trained."""
        if not isinstance(values, dict):
            raise ConfigError(f"a config must be a dict, got {type(values).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{**BEFORE_FIELD_EXISTED, **{key: value for key, value in values.items() if key in known}})


NAMED_COLOURS = {"white": (255, 255, 255), "black": (0, 0, 0)}


def background_colour(text: str) -> tuple[int, int, int]:
    """white, black or R,G,B (each 0 to 255) as an RGB triple."""
    if text in NAMED_COLOURS:
        return NAMED_COLOURS[text]
    parts = text.split(",")
    if len(parts) == 3 and all(part.strip().isdigit() and int(part) <= 255 for part in parts):
        red, green, blue = (int(part) for part in parts)
        return red, green, blue
    raise ConfigError(f"background must be white, black or R,G,B with each from 0 to 255, got {text!r}", "background")


def dcgan_supports(img_size: int) -> bool:
    from .models.dcgan import supports_img_size  # on use: the models import torch, the CLI's --help need not

    return supports_img_size(img_size)


def check_types(config: Config) -> None:
    """Every field has its declared type (a crafted checkpoint may hold a str or a float anywhere)."""
    for field in dataclasses.fields(config):
        value, expected = getattr(config, field.name), FIELD_TYPES[field.type]
        if isinstance(value, bool) != (field.type == "bool") or not isinstance(value, expected):
            raise ConfigError(f"{field.name} must be a {field.type}, got {value!r}", field.name)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}", name)


def merge_for_resume(saved: Config, overrides: dict[str, Any]) -> tuple[Config, dict[str, tuple[Any, Any]]]:
    """The saved config with the user's explicit flags applied.

    Flags that change the model or data must agree with the checkpoint; the others (epochs,
    learning rate, cadences...) may change. Returns the new config and what changed.
    """
    candidate = dataclasses.replace(saved, **overrides)
    changes = {
        name: (getattr(saved, name), getattr(candidate, name))
        for name in overrides
        if getattr(saved, name) != getattr(candidate, name)
    }
    forbidden = {name: change for name, change in changes.items() if name in MODEL_FIELDS}
    if forbidden:
        listing = "; ".join(
            f"{name}: checkpoint has {old!r}, flag says {new!r}" for name, (old, new) in forbidden.items()
        )
        raise ConfigError(f"cannot resume with a different model or data: {listing}")
    return candidate, changes
