"""The GPU path (#29). The CUDA tests skip without a GPU; benchmarks/gpu_check.py runs them (-m cuda) on the day one
is at hand. The errors a user meets without one, and the check script's smoke run, are tested on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import DATA_DIR, assert_clean_failure, quick_config, run
from mnist_gan import epochs, formats, train
from mnist_gan.config import Config
from mnist_gan.data import load_dataset
from mnist_gan.devices import resolve_precision
from mnist_gan.epochs import Session, StatsWindow, train_epoch
from mnist_gan.reporting import SilentReporter
from mnist_gan.state import new_state
from mnist_gan.step import train_step
from mnist_gan.trainer import prepare_models

ROOT = Path(__file__).resolve().parents[1]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_steady_state_training_never_waits_for_the_host(arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The epoch loop as `main` runs it, on a GPU, with the data resident there: after a warm-up epoch, torch's sync
    debug mode turns any host synchronisation (.item(), bool(tensor), a copy to the host) into an error. The step
    statistics are read at the log points alone, and only there is the mode relaxed."""
    device = torch.device("cuda")
    config = Config.for_dataset(arch=arch, device="cuda", num_classes=10, epochs=2, max_batches=20, log_every=10,
                                sample_interval=0, eval_every=0)  # fmt: skip
    state = new_state(config, device)
    prepare_models(state, config, device)
    images, labels = load_dataset("mnist", DATA_DIR, img_size=config.img_size)
    data = (images.to(device), labels.to(device))
    session = Session(config, state, data, resolve_precision("auto", device), SilentReporter(), [])
    train_epoch(session)  # warm-up: cuDNN's choice of kernels, the optimizers' first steps
    state.epoch, state.batches_done = 1, 0

    reads: list[int] = []
    read = StatsWindow.read

    def read_at_a_log_point(window: StatsWindow, session: Session) -> dict[str, float]:
        reads.append(session.state.step)
        torch.cuda.set_sync_debug_mode("default")
        try:
            return read(window, session)
        finally:
            torch.cuda.set_sync_debug_mode("error")

    monkeypatch.setattr(StatsWindow, "read", read_at_a_log_point)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        assert train_epoch(session)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert reads == [30, 40, 40]  # two log points, then the end of the epoch (an empty window)
    assert state.step == 40


@pytest.mark.cuda
@needs_cuda
def test_sync_batchnorm_and_the_gpu_path_run_on_cuda() -> None:
    config = Config(arch="dcgan", width=8, device="cuda", sync_batchnorm=True)
    state = new_state(config, torch.device("cuda"))
    prepare_models(state, config, torch.device("cuda"))  # one process: no DDP wrappers, but SyncBatchNorm and NHWC
    assert torch.backends.cudnn.benchmark
    assert any(isinstance(module, torch.nn.SyncBatchNorm) for module in state.discriminator.modules())
    assert any(isinstance(module, torch.nn.SyncBatchNorm) for module in state.generator.modules())
    real = (torch.rand(8, 1, 28, 28, device="cuda") * 2 - 1).contiguous(memory_format=torch.channels_last)
    stats = train_step(state, real, 100, torch.float32)
    assert all(torch.isfinite(value) for value in stats.values())
    keys = formats.checkpoint_fields(state, config)["discriminator"].keys()
    assert keys == new_state(Config(arch="dcgan", width=8), torch.device("cpu")).discriminator.state_dict().keys()


@pytest.mark.parametrize(
    ("flags", "phrase"),
    [
        (["--device", "cuda"], "device 'cuda' is not available"),
        (["--sync-batchnorm"], "--sync-batchnorm needs CUDA"),
    ],
)
@pytest.mark.skipif(torch.cuda.is_available(), reason="the errors of a machine without a GPU")
def test_gpu_flags_without_a_gpu_are_one_clear_error(flags: list[str], phrase: str, tmp_path: Path) -> None:
    result = run("main", "--data-dir", str(DATA_DIR), "--run-dir", str(tmp_path / "run"), *flags)
    assert_clean_failure(result, 2, phrase)
    assert not (tmp_path / "run").exists()


def test_out_of_memory_names_the_batch_size_and_leaves_the_run_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch too large for the GPU, met in the second epoch: one message naming --batch-size, and --resume goes
    on from the first epoch's checkpoint. (Raised by hand: a CPU has no CUDA memory to run out of.)"""
    run_dir = tmp_path / "run"
    train(quick_config(run_dir, epochs=1, eval_every=0))
    step = epochs.training_step

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(epochs, "training_step", out_of_memory)
    result = run("main", "--resume", "--run-dir", run_dir, "--epochs", "2")
    assert_clean_failure(result, 2, "out of memory on cpu at --batch-size 32", "with --resume")
    monkeypatch.setattr(epochs, "training_step", step)
    assert run("main", "--resume", "--run-dir", run_dir, "--epochs", "2").exit_code == 0
    assert formats.load(run_dir / "checkpoints" / "epoch_001.pt")["epoch"] == 2


@pytest.mark.slow
def test_the_gpu_check_runs_every_step_on_the_cpu(tmp_path: Path) -> None:
    """benchmarks/gpu_check.py --smoke: the same commands as on a GPU, tiny, so the script cannot rot."""
    prepared, out = tmp_path / "gpu_data", tmp_path / "out"
    script = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")]
    subprocess.run([*script, "--prepare", str(prepared)], check=True, capture_output=True)
    assert sorted(path.name for path in (prepared / "MNIST" / "raw").iterdir())[0] == "t10k-images-idx3-ubyte.gz"
    elsewhere = {**os.environ, "MNIST_GAN_DATA_DIR": str(tmp_path / "absent")}  # as on a GPU machine: only --data
    done = subprocess.run([*script, str(out), "--data", str(prepared), "--smoke"], capture_output=True, text=True,
                          env=elsewhere)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    table = (out / "table.md").read_text()
    steps = ["environment", "main", "evaluate", "throughput", "generate", "dcgan_64px", "torchrun_1_rank",
             "cuda_tests"]  # fmt: skip
    for step in steps:
        assert f"| {step} | ok |" in table, (step, table, (out / "logs" / f"{step}.log").read_text()[-3000:])
    assert "fid" in table and "images/s" in (out / "logs" / "throughput.log").read_text()
    written = {path.relative_to(tmp_path).parts[0] for path in tmp_path.rglob("*")}
    assert written == {"gpu_data", "out"}  # nothing outside its output folder (and the prepared data)


def test_a_gpu_that_fails_mid_run_is_one_clear_error_and_the_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A GPU that vanishes or faults mid-run (raised by hand: a CPU has none to lose)."""
    run_dir = tmp_path / "run"
    train(quick_config(run_dir, epochs=1, eval_every=0))
    step = epochs.training_step

    def gpu_gone(*args, **kwargs):
        raise torch.AcceleratorError("CUDA error: unspecified launch failure")

    monkeypatch.setattr(epochs, "training_step", gpu_gone)
    result = run("main", "--resume", "--run-dir", run_dir, "--epochs", "2")
    assert_clean_failure(result, 1, "the GPU failed during training", "unspecified launch failure", "--resume")
    monkeypatch.setattr(epochs, "training_step", step)
    assert run("main", "--resume", "--run-dir", run_dir, "--epochs", "2").exit_code == 0


def test_compile_that_cannot_compile_here_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.compile fails at the first step, deep in the loop (no C++ compiler, say): one message, not a trace."""
    compile_module = torch.nn.Module.compile

    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compile_module(self, backend=broken_backend))
    result = run("main", "--data-dir", DATA_DIR, "--run-dir", tmp_path / "run", "--compile", "--arch", "mlp",
                 "--epochs", "1", "--max-batches", "2", "--eval-every", "0")  # fmt: skip
    assert_clean_failure(result, 2, "--compile could not compile the models here", "no C++ compiler found",
                         "train without --compile")  # fmt: skip
