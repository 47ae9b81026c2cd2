"""Data-parallel training under torchrun, on the CPU with gloo (#13). CUDA-only paths skip without a GPU."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from helpers import DATA_DIR, run, wait_for
from mnist_gan import checkpoints, distributed, formats
from mnist_gan.config import Config
from mnist_gan.state import new_state
from mnist_gan.step import r1_weight, train_step
from mnist_gan.trainer import prepare_models

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
SMALL_RUN = ["--arch", "mlp", "--batch-size", "32", "--eval-samples", "200", "--sample-interval", "10", "--seed", "2"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MNIST_GAN_DATA_DIR": str(DATA_DIR)}


def torchrun(run_dir: Path, *flags: str, launcher: list[str] = TORCHRUN, **popen) -> subprocess.Popen:
    command = [*launcher, "-m", "mnist_gan", "main", "--run-dir", str(run_dir), *SMALL_RUN, *flags]
    return subprocess.Popen(
        command, env=ONE_THREAD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    return output


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# No cross-sample coupling: the MLP D has no BatchNorm, minibatch spread is off, and G's BatchNorm runs in eval
# mode (a fixed affine map). Then the mean loss over 2B images is the mean of the two ranks' losses over B each,
# and DDP's averaged gradients must give one process's update on the whole batch.
EQUIVALENCE = dict(arch="mlp", minibatch_std=False, r1=1.0, r1_every=2, ema_decay=0.0, lr=1e-3)
STEPS, BATCH = 3, 16


def equivalence_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(0)
    real = torch.rand(STEPS, 2 * BATCH, 1, 28, 28, generator=rng) * 2 - 1
    noise = torch.randn(STEPS, 2 * BATCH, 100, generator=rng)
    return real, noise


def train_two_ranks(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    device = distributed.start(torch.device("cpu"))
    config = Config(**EQUIVALENCE)
    state = new_state(config, device)
    state.generator.eval()
    prepare_models(state, config, device)  # the trainer's own DDP wrapping
    real, noise = equivalence_inputs()
    shard = slice(rank * BATCH, (rank + 1) * BATCH)
    for step in range(STEPS):
        train_step(state, real[step, shard], 100, torch.float32, r1=r1_weight(config, step), noise=noise[step, shard])
    if rank == 0:
        torch.save({**state.generator.state_dict(), **state.discriminator.state_dict()}, out)
    distributed.stop()


@pytest.mark.slow  # two spawned processes
def test_two_ranks_of_batch_b_update_like_one_process_of_batch_2b(tmp_path: Path) -> None:
    """With no cross-sample coupling, 2 ranks x 16 images match 1 process x 32 images after 3 steps (R1 on one
    of them) within 1e-5: a rank that skipped the all-reduce, or trained on the wrong shard, is off by far more."""
    out = tmp_path / "ranks.pt"
    mp.spawn(train_two_ranks, args=(free_port(), str(out)), nprocs=2, join=True)
    config = Config(**EQUIVALENCE)
    state = new_state(config, torch.device("cpu"))
    state.generator.eval()
    real, noise = equivalence_inputs()
    for step in range(STEPS):
        train_step(state, real[step], 100, torch.float32, r1=r1_weight(config, step), noise=noise[step])
    single = {**state.generator.state_dict(), **state.discriminator.state_dict()}
    ranks = torch.load(out)
    moved = new_state(config, torch.device("cpu")).discriminator.state_dict()
    assert any(not torch.equal(moved[key], single[key]) for key in moved)  # training did change D
    for key, value in single.items():
        torch.testing.assert_close(ranks[key], value, rtol=1e-5, atol=1e-5, msg=key)


@pytest.mark.slow
def test_a_rank_that_dies_ends_the_job_with_a_clear_error_and_a_loadable_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    # torchrun looks at its workers every 0.1 s and SIGTERMs the survivors of a dead one: the surviving rank's own
    # report then raced it (it lost once in CI). Every 5 s, the rank's own handling of its peer's death is tested.
    launcher = [*TORCHRUN, "--monitor-interval", "5"]
    process = torchrun(run_dir, "--epochs", "1000", "--max-batches", "10", launcher=launcher, start_new_session=True)
    wait_for((run_dir / "checkpoints", "epoch_001.pt"), process)
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    ranks = {rank: int(pid) for pid in children if (rank := environment(int(pid)).get("RANK")) is not None}
    assert sorted(ranks) == ["0", "1"], ranks
    started = time.monotonic()
    os.kill(ranks["1"], signal.SIGKILL)
    output = finish(process, timeout=120)
    assert process.returncode != 0
    assert time.monotonic() - started < 60, "the surviving rank did not stop in time"
    assert "another rank stopped" in output and "[rank0]: Traceback" not in output, output  # torchrun adds its own
    newest = checkpoints.latest_checkpoint(run_dir)
    assert formats.load(newest)["step"] > 0
    assert not list(run_dir.rglob("*.tmp*"))


def environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


@pytest.mark.slow
def test_two_ranks_stop_together_on_sigterm_leave_one_run_and_resume_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM to torchrun: both ranks stop at the step they agreed on and rank 0 saves one mid-epoch checkpoint.
    Rank 0 alone writes: one event file a session, one set of checkpoints, metrics and generator.pth. Each step
    takes 2 x 32 images; --resume continues on both ranks, and a resume in one process says the batch changed."""
    run_dir = tmp_path / "ddp"
    process = torchrun(run_dir, "--epochs", "2", "--max-batches", "150", "--log-every", "5", "--eval-every", "0",
                       start_new_session=True)  # fmt: skip
    wait_for((run_dir / "checkpoints", "epoch_000.pt"), process)
    time.sleep(0.1)  # inside the second epoch: its 150 steps once ended within 0.5 s on an AMX CPU, and no stop came
    process.send_signal(signal.SIGTERM)  # to torchrun, which passes it to both ranks
    output = finish(process, timeout=120)
    middle = [path for path in checkpoints.list_checkpoints(run_dir) if "_batch_" in path.name]
    assert len(middle) == 1, (output, checkpoints.list_checkpoints(run_dir))
    assert formats.load(middle[0])["batches_done"] % 5 == 0  # both ranks stopped at the step they agreed on
    assert "Resume with: torchrun --nproc-per-node 2 -m mnist_gan main --resume --run-dir" in output, output

    output = finish(torchrun(run_dir, "--resume", "--eval-every", "1"))
    assert "resuming" in output and "finished" in output and "Traceback" not in output, output
    assert output.count("epoch 2/2 done") == 1, output  # only rank 0 reports
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # one per session, rank 0's only
    complete = [path.name for path in checkpoints.list_checkpoints(run_dir) if "_batch_" not in path.name]
    assert complete == ["epoch_000.pt", "epoch_001.pt"]
    assert (run_dir / "generator.pth").is_file() and (run_dir / "best.pt").is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1  # the last epoch's evaluation
    payload = formats.load(checkpoints.latest_checkpoint(run_dir))
    assert payload["step"] == 300 and payload["config"]["batch_size"] == 32

    result = run("main", "--resume", "--run-dir", run_dir, "--epochs", "3", "--max-batches", "5", "--eval-every", "0")
    assert result.exit_code == 0, result.output
    assert "trained by 2 process(es) and goes on with 1" in caplog.text  # another global batch: said aloud


def test_sync_batchnorm_on_the_cpu_is_a_clear_error() -> None:
    from mnist_gan.errors import ConfigError

    with pytest.raises(ConfigError, match="needs CUDA"):
        distributed.sync_batchnorm(torch.nn.BatchNorm1d(4), torch.device("cpu"))


def test_a_ranks_own_failure_is_not_blamed_on_a_peer(tmp_path: Path) -> None:
    """In a real (one-rank, gloo) process group: out of memory and a bug stay what they are; only a failure of
    the communication (gloo's lost connection, torch's distributed errors) is another rank's death."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        with pytest.raises(torch.cuda.OutOfMemoryError), distributed.peer_errors():
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        with pytest.raises(RuntimeError, match="cannot be multiplied"), distributed.peer_errors():
            torch.zeros(2, 3) @ torch.zeros(2, 3)
        with pytest.raises(distributed.RankFailed, match="another rank stopped"), distributed.peer_errors():
            raise RuntimeError("[third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer")
        with pytest.raises(distributed.RankFailed, match="another rank stopped"), distributed.peer_errors():
            raise dist.DistBackendError("NCCL communicator was aborted")
    finally:
        dist.destroy_process_group()
