"""The run configuration: one frozen dataclass, saved in every checkpoint and in TensorBoard's hparams."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

# name -> (channels, image size)
DATASETS = {"mnist": (1, 28), "fashion-mnist": (1, 28), "cifar10": (3, 32), "celeba": (3, 64), "folder": (3, 64)}
# Each dataset's recipe: the settings where it differs from the defaults below, applied by Config.for_dataset to
# whatever the user did not set (a new run from the CLI). MNIST and Fashion-MNIST have labels, and a conditional
# model scores better in the same minutes (FID 7.1 against 12.8 on MNIST, 41.5 against 44.0 on Fashion-MNIST:
# benchmarks/RESULTS.md, sections 10 and 11). Colour images need the convolutional generator (the MLP draws blurred
# colour blobs: README, "Switching datasets"); batch 64 keeps its steps short; its Adam settings are the ones it was
# measured with.
# Fashion-MNIST's generator swings more from step to step, so its weight average reaches back further: runs end on
# their best epoch (final FID 38.5 and 39.3 against 49.0 and 49.1, two seeds; RESULTS.md section 12). On MNIST that
# span cost FID (12.8 against 7.3).
DIGITS_RECIPE = {"conditional": True}
GARMENTS_RECIPE = {**DIGITS_RECIPE, "ema_span": 1 / 3, "ema_decay": 0.9999}
PHOTO_RECIPE = {"arch": "dcgan", "batch_size": 64, "b1": 0.5, "b2": 0.999}
RECIPES: dict[str, dict[str, Any]] = {
    "mnist": DIGITS_RECIPE, "fashion-mnist": GARMENTS_RECIPE,
    "cifar10": PHOTO_RECIPE, "celeba": PHOTO_RECIPE, "folder": PHOTO_RECIPE,
}  # fmt: skip
ARCHITECTURES = ("dcgan", "mlp")
PRECISIONS = ("auto", "fp32", "bf16")
LOSSES = ("ns", "hinge")  # non-saturating (Goodfellow et al. 2014); hinge (Lim & Ye 2017, SN-GAN, BigGAN)
LR_SCHEDULES = ("constant", "linear")
DEVICES = ("auto", "cpu", "cuda", "mps")

# Inclusive bounds; beyond them a run crashes (BatchNorm needs 2 images a batch; the k-NN metrics need
# 100 samples to mean anything) or a crafted checkpoint would make us allocate gigabytes before failing.
MIN_EVAL_SAMPLES = 100
LIMITS = {
    "epochs": (1, 1_000_000),
    "batch_size": (2, 65_536),
    "latent_dim": (1, 4096),
    "img_size": (8, 256),
    "width": (1, 1024),
    "max_batches": (0, 2**31 - 1),
    "log_every": (1, 2**31 - 1),
    "sample_interval": (0, 2**31 - 1),
    "eval_every": (0, 1_000_000),
    "eval_samples": (MIN_EVAL_SAMPLES, 100_000),
    "keep_last": (0, 1_000_000),
    "r1_every": (1, 1_000_000),
    "num_classes": (0, 100_000),
    "seed": (0, 2**31 - 1),
}
# Settings added after the first release, and the value that means "as before they existed": a saved config without
# them (an older checkpoint) is rebuilt with these, not with today's defaults.
BEFORE_FIELD_EXISTED = {
    "minibatch_std": False, "r1": 0.0, "r1_every": 1, "loss": "ns", "lr_schedule": "constant", "lr_d": 0.0,
    "conditional": False, "ema_span": 1 / 9,
}  # fmt: skip
FIELD_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool}

# Fields that define the model or its data: a resumed run may not change them.
MODEL_FIELDS = (
    "dataset", "arch", "latent_dim", "width", "img_size", "channels", "spectral_norm", "minibatch_std", "conditional",
    "num_classes",
)  # fmt: skip


@dataclass(frozen=True)
class Config:
    # Data
    dataset: str = "mnist"
    data_dir: str = "data"  # torchvision layout
    download: bool = True  # fetch the dataset into data_dir when it is missing
    img_size: int = 0  # 0: the dataset's own size (28 for MNIST)
    channels: int = 0  # 0: the dataset's own channel count

    # Model. The MLP is the default: on a CPU it reaches good digits sooner than the DCGAN
    # (IS 8.6 vs 7.0 after the same minutes here; README and benchmarks/).
    arch: str = "mlp"
    latent_dim: int = 100
    width: int = 32  # DCGAN base channel count (G: 128-64-1 channels); the MLP ignores it
    spectral_norm: bool = False  # spectral normalisation of D's layers (Miyato et al. 2018)
    minibatch_std: bool = True  # D also sees the spread of its features over groups of 4 images (ProGAN): variety
    conditional: bool = False  # G draws the class it is given, D judges image and class together (labelled data;
    # MNIST's and Fashion-MNIST's recipe turns it on)
    num_classes: int = 0  # classes of a conditional model; 0: counted from the data when the run starts

    # Optimisation: Adam with StyleGAN2's b1 = 0, b2 = 0.99 (beside R1 they beat the DCGAN paper's 0.5, 0.999: FID
    # 12.8 against 18.5 in a default run), at a higher learning rate than the usual 2e-4: 2e-3 beat 1e-3, 5e-4 and
    # 2e-4 at equal steps; batch 256 keeps the CPU busy (3x the images/s of 64).
    epochs: int = 50  # under 10 minutes on a 2-core AVX2 CPU (README)
    batch_size: int = 256
    lr: float = 2e-3
    b1: float = 0.0
    b2: float = 0.99
    lr_d: float = 0.0  # D's learning rate; 0: the same as lr (two time-scales when it differs)
    lr_schedule: str = "linear"  # linear: decay to 0 at the end of the run (its epochs or its time budget); constant
    loss: str = "ns"  # ns: non-saturating, on logits; hinge
    r1: float = 1.0  # gamma of the R1 penalty, gamma/2 * |grad D(x)|^2 on real images (Mescheder et al. 2018); 0: off
    r1_every: int = 4  # apply R1 on one step in this many, r1_every times as strong (StyleGAN2's lazy R1)
    ema_decay: float = 0.999  # generator weight average used for samples and export; 0 turns it off. Its decay
    # grows with the steps, so the average reaches back over about ema_span of the steps so far, until this caps it
    ema_span: float = 1 / 9
    precision: str = "auto"  # auto: bf16 where the hardware runs it fast, else fp32
    compile: bool = False  # torch.compile G, and D when R1 is off (a slow start; pays off on GPUs and long runs)
    sync_batchnorm: bool = False  # under torchrun on GPUs: BatchNorm statistics over every rank's batch
    max_batches: int = 0  # cap on batches per epoch for quick runs; 0: the whole dataset
    time_budget: float = 0.0  # minutes of training (summed over resumes) after which the run ends cleanly; 0: none

    # Logging, evaluation and output
    run_dir: str = ""  # "": a new folder under runs/ named by date and time
    log_every: int = 10  # steps between TensorBoard scalars
    sample_interval: int = 200  # steps between saved sample grids; 0 turns them off
    eval_every: int = 1  # epochs between quality evaluations; 0 turns them off
    eval_samples: int = 500  # generated images per evaluation: about 0.3 s, under 10% of a default epoch
    inception_fid: bool = False  # also the standard FID on Inception-v3 features (needs torch-fidelity and weights)
    inception_weights: str = ""  # the Inception weights file; "": torch's hub cache, downloaded when online
    keep_last: int = (
        3  # per-epoch checkpoints kept (30 MB each for the MLP); 0 keeps all. best.pt and generator.pth stay
    )
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        check_types(self)
        check_choice("dataset", self.dataset, tuple(DATASETS))
        check_choice("arch", self.arch, ARCHITECTURES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("device", self.device, DEVICES)
        channels, size = DATASETS[self.dataset]
        # Fill the dataset's defaults so a saved config is explicit.
        object.__setattr__(self, "img_size", self.img_size or size)
        object.__setattr__(self, "channels", self.channels or channels)
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(f"{name} must be between {low:,} and {high:,}, got {value!r}", name)
        if self.channels != channels:
            raise ConfigError(
                f"{self.dataset} images have {channels} channel(s); channels cannot be {self.channels}", "channels"
            )
        if not 0 <= self.time_budget <= 1e7:  # NaN fails too
            raise ConfigError(
                f"time_budget must be between 0 and 10,000,000 minutes, got {self.time_budget}", "time_budget"
            )
        if not 0 < self.lr < 1:
            raise ConfigError(f"lr must be in (0, 1), got {self.lr}", "lr")
        if not 0 <= self.r1 <= 1e4:
            raise ConfigError(f"r1 must be between 0 and 10,000, got {self.r1}", "r1")
        if not 0 < self.ema_span <= 1:
            raise ConfigError(f"ema_span must be in (0, 1], got {self.ema_span}", "ema_span")
        for name in ("b1", "b2", "ema_decay", "lr_d"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}", name)
        if self.conditional and self.num_classes == 1:
            raise ConfigError("a conditional model needs at least 2 classes", "conditional")
        if self.arch == "dcgan" and not dcgan_supports(self.img_size):
            raise ConfigError(
                f"dcgan needs an image size that is a multiple of 4 up to 32, or 64, 128 or 256; got {self.img_size}",
                "img_size",
            )

    @classmethod
    def for_dataset(cls, **given: Any) -> Config:
        """A new run's config: the settings given, the dataset's recipe (RECIPES) for the others, else the defaults."""
        return cls(**{**RECIPES.get(given.get("dataset", cls.dataset), {}), **given})

    @property
    def lr_discriminator(self) -> float:
        return self.lr_d or self.lr  # --lr-d 0: D learns at G's rate

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
