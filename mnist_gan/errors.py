"""The exceptions a user can cause; the CLI turns each into one clear message and an exit code."""

from __future__ import annotations


class MnistGanError(Exception):
    """Base class: something the user can fix (a flag, a path, a file)."""

    exit_code = 1


class ConfigError(MnistGanError):
    """A configuration value is out of range or contradicts a checkpoint."""

    exit_code = 2

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field  # the Config field at fault: the CLI names its flag


class DataError(MnistGanError):
    """The dataset is missing, unreadable or unusable (and could not be downloaded)."""


def dataset_unavailable(
    name: str, data_dir: object, folder: object, error: Exception, download: bool, present: bool, what_to_put: str
) -> DataError:
    """The one error for a torchvision dataset that did not load: damaged when its files are there, else missing,
    with why (offline, or --no-download) and what to put where."""
    if present:
        return DataError(f"could not read {name} from {folder}: {type(error).__name__}: {error}")
    reason = f"could not be downloaded: {str(error).rstrip('.')}" if download else "downloading is off (--no-download)"
    return DataError(f"{name} is not in --data-dir {str(data_dir)!r} and {reason}.\n{what_to_put}")


class CheckpointError(MnistGanError):
    """A checkpoint or generator file is missing, truncated, foreign or unsafe."""


class NoEvaluator(CheckpointError):
    """No evaluator exists for the dataset: training goes on without quality metrics."""


class NoInception(MnistGanError):
    """The Inception network for the standard FID cannot be had (no torch-fidelity, offline, bad weights)."""


class OutputError(MnistGanError):
    """An output cannot be written: a bad path, a read-only folder, a full disk."""


class RunInUse(MnistGanError):
    """Another process holds the run folder's lock."""


class TrainingFailed(MnistGanError):
    """The device failed under a run (a GPU error, a GPU gone); its saved checkpoints are whole."""


class TrainingDiverged(MnistGanError):
    """A loss became NaN or infinite."""


class TrainingInterrupted(MnistGanError):
    """SIGINT or SIGTERM stopped training after a checkpoint was saved."""

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signal_number  # 130 for SIGINT, 143 for SIGTERM, as shells do
