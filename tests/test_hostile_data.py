"""Issue 25, data: crafted datasets, caches and folders, tried as a careless or malicious user would (real files,
real processes, a real read-only mount). Each test failed on main before the fix."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import (
    DATA_DIR,
    TINY_RUN,
    RunsCode,
    assert_clean_failure,
    make_shapes_folder,
    runner,
    write_celeba,
    write_cifar10,
)
from mnist_gan import formats
from mnist_gan.__main__ import app
from mnist_gan.config import Config, background_colour
from mnist_gan.data import cache, folder, load_dataset
from mnist_gan.errors import ConfigError, DataError, NoEvaluator
from mnist_gan.evaluator import packaged_weights
from mnist_gan.metrics import quality_meter


@pytest.mark.parametrize("name", ["data_batch_1", "test_batch", "batches.meta"])
def test_a_crafted_cifar10_file_runs_nothing_and_is_refused(tmp_path: Path, name: str) -> None:
    """Training reads the data batches, train-evaluator the test batch too; batches.meta is never read."""
    root = write_cifar10(tmp_path / "data")
    marker = tmp_path / "ran"
    (root / "cifar-10-batches-py" / name).write_bytes(pickle.dumps({"data": RunsCode(marker), "labels": []}))
    tiny = ["--run-dir", str(tmp_path / "run"), "--no-download", *TINY_RUN[:4], "--batch-size", "8", *TINY_RUN[6:]]
    refused = 0
    for command in (["main", *tiny], ["train-evaluator"]):
        result = runner.invoke(app, [command[0], "--dataset", "cifar10", "--data-dir", str(root), *command[1:]])
        if f"{name} is not a CIFAR-10 batch" in result.output:
            assert_clean_failure(result, 1, "it asks for", "system, which no CIFAR-10 batch holds")
            refused += 1
    assert not marker.exists(), "the pickle's code ran"
    assert refused == {"data_batch_1": 2, "test_batch": 1, "batches.meta": 0}[name]
    assert (tmp_path / "run").exists() == (name != "data_batch_1")


def test_a_genuine_copy_of_cifar10_in_any_pickle_protocol_loads_and_bad_labels_are_named(tmp_path: Path) -> None:
    root = write_cifar10(tmp_path / "data")
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    content = pickle.loads(batch.read_bytes())
    for protocol in (2, 5):  # Python 2's protocol (as the release), and the newest
        batch.write_bytes(pickle.dumps(content, protocol=protocol))
        images, labels = load_dataset("cifar10", root)
        assert tuple(images.shape) == (30, 3, 32, 32) and torch.equal(images[:6, 0, 0, 0], (labels[:6] * 20).byte())
    batch.write_bytes(pickle.dumps({**content, "labels": [label + 50 for label in content["labels"]]}))
    result = runner.invoke(app, ["main", "--dataset", "cifar10", "--data-dir", str(root), "--conditional",
                                 "--run-dir", str(tmp_path / "run"), *TINY_RUN])  # fmt: skip
    assert_clean_failure(result, 1, "data_batch_1 is damaged: labels must be 0..9")
    assert not (tmp_path / "run").exists()


def test_no_planted_link_is_written_through_by_the_cache(tmp_path: Path) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=4)
    folder.load_all(root, img_size=16)
    cache_dir = root / cache.CACHE_DIR
    names = [path.name for path in cache_dir.glob("*.npy")]
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in names:  # every name a writer could use: the cache files, and the fixed temporary names beside them
        (cache_dir / name).unlink()
        for planted in (cache_dir / name, cache_dir / f"{name}.tmp"):
            planted.symlink_to(victim)
    images, _ = folder.load_all(root, img_size=16)
    assert victim.read_text() == "precious" and len(images) == 12
    assert all(not (cache_dir / name).is_symlink() for name in names)  # replaced by the real cache


@pytest.mark.slow
def test_two_processes_on_a_fresh_folder_decode_it_once(tmp_path: Path) -> None:
    """Two runs (or two torchrun ranks) on a folder with no cache: one decodes and writes, the other waits for it
    and reads the cache; no 'could not cache' warning, no half-written file read."""
    root = make_shapes_folder(tmp_path / "shapes", per_class=150, size=64)
    go = tmp_path / "go"
    script = textwrap.dedent(f"""
        import logging, sys, time
        from pathlib import Path
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        from mnist_gan.data import folder
        while not Path({str(go)!r}).exists():
            time.sleep(0.01)
        images, labels = folder.load_all({str(root)!r}, img_size=64)
        print(int(images.sum()), labels.tolist().count(2))
    """)
    processes = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    go.touch()
    outputs = [process.communicate(timeout=120) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    logs = "".join(stderr for _, stderr in outputs)
    assert logs.count("decoding 450 images") == 1, logs
    assert "could not cache" not in logs and "ignoring" not in logs, logs
    assert outputs[0][0] == outputs[1][0]


def test_changed_classes_make_a_folder_evaluator_refused_clearly(tmp_path: Path, caplog) -> None:
    """An evaluator remembers the classes, channels and size it was made for: add or remove a class folder, or
    put another dataset's evaluator in its place, and it is refused with what to do (training goes on without
    metrics) instead of an IndexError or silently wrong classes."""
    root = make_shapes_folder(tmp_path / "shapes", per_class=40)
    result = runner.invoke(app, ["train-evaluator", "--dataset", "folder", "--data-dir", str(root), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    evaluator_file = root / cache.CACHE_DIR / "evaluator_folder.pt"
    assert formats.load(evaluator_file, (formats.EVALUATOR,))["classes"] == ["circle", "square", "triangle"]
    run_dir = tmp_path / "run"  # first, what fits: another tool's colour samples score against the folder
    result = runner.invoke(app, ["main", "--dataset", "folder", "--data-dir", str(root), "--img-size", "32",
                                 "--run-dir", str(run_dir), *TINY_RUN])  # fmt: skip
    assert result.exit_code == 0, result.output
    samples = tmp_path / "samples.npz"
    result = runner.invoke(app, ["generate", "--run-dir", str(run_dir), "--num-images", "100", "--out", str(samples)])
    assert result.exit_code == 0 and np.load(samples)["images"].shape == (100, 32, 32, 3), result.output
    result = runner.invoke(app, ["evaluate", "--images", str(samples), "--dataset", "folder", "--data-dir", str(root)])
    assert result.exit_code == 0 and "100 images vs the folder test split" in result.output, result.output
    added = tmp_path / "added"
    shutil.copytree(root, added)
    shutil.copytree(added / "circle", added / "ellipse")
    removed = tmp_path / "removed"
    shutil.copytree(root, removed)
    shutil.rmtree(removed / "triangle")
    grey = tmp_path / "grey"
    shutil.copytree(root, grey)
    shutil.copy(packaged_weights("mnist"), grey / cache.CACHE_DIR / "evaluator_folder.pt")  # 1 channel, 10 classes
    for data, expected in ((added, "4 classes (circle, ellipse, square, triangle)"),
                           (removed, "2 classes (circle, square)"), (grey, "1 channel(s), 10 classes")):  # fmt: skip
        run_dir = tmp_path / f"run_{data.name}"
        flags = ["--dataset", "folder", "--data-dir", str(data), "--img-size", "32", "--run-dir", str(run_dir)]
        result = runner.invoke(app, ["main", *flags, *TINY_RUN[:-4], "--eval-samples", "100"])
        assert result.exit_code == 0, result.output
        assert "quality metrics are off" in caplog.text and "does not fit the data" in caplog.text
        assert expected in caplog.text and "train-evaluator --dataset folder" in caplog.text
        caplog.clear()
        result = runner.invoke(app, ["evaluate", "--run-dir", str(run_dir), "--num-images", "100"])
        assert_clean_failure(result, 1, "does not fit the data", expected)


def test_an_evaluator_needs_enough_images_and_small_folders_train_it(tmp_path: Path) -> None:
    """Fewer than 128 training images (the evaluator's batch) used to crash OneCycleLR; fewer than the metrics'
    100 is a clear error before any training."""
    small = make_shapes_folder(tmp_path / "small", per_class=40)  # 108 training images
    result = runner.invoke(app, ["train-evaluator", "--dataset", "folder", "--data-dir", str(small), "--epochs", "1"])
    assert result.exit_code == 0 and "test accuracy" in result.output, result.output
    tiny = make_shapes_folder(tmp_path / "tiny", per_class=20)
    result = runner.invoke(app, ["train-evaluator", "--dataset", "folder", "--data-dir", str(tiny)])
    assert_clean_failure(result, 1, "has 54 training images; the evaluator needs at least 100")


@pytest.mark.parametrize(
    "mode, pixels, expected",
    [("I;16", np.full((8, 8), 32768, np.uint16), 128), ("F", np.full((8, 8), 0.5, np.float32), 128)],
    ids=["16-bit png", "float tiff"],
)
def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path: Path, mode: str, pixels, expected: int) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=4)
    image = Image.fromarray(pixels)
    assert image.mode == mode
    image.save(root / "circle" / ("grey.png" if mode == "I;16" else "grey.tif"))
    images, _ = folder.load_all(root, img_size=8)
    grey = images[4]  # sorts after circle/003.png
    assert abs(int(grey.float().mean()) - expected) <= 1, grey.float().mean()


@pytest.mark.parametrize(
    "dimensions, damage",
    [(4, lambda array: array.astype(np.float64) * 1000), (1, lambda array: array + 50),
     (1, lambda array: array.reshape(-1, 1))],
    ids=["images as float64 of the same shape", "labels or indices shifted by 50", "labels or indices in 2-D"],
)  # fmt: skip
def test_a_foreign_cache_is_decoded_again_not_trusted(tmp_path: Path, dimensions: int, damage, caplog) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=4)
    images, labels = folder.load_all(root, img_size=16)
    (damaged,) = [path for path in (root / cache.CACHE_DIR).glob("*.npy") if np.load(path).ndim == dimensions]
    np.save(damaged, damage(np.load(damaged)))
    with caplog.at_level(logging.WARNING):
        again, again_labels = folder.load_all(root, img_size=16)
    assert again.dtype == torch.uint8 and torch.equal(again, images) and torch.equal(again_labels, labels)
    assert "ignoring" in caplog.text


ODD_FILES = {
    "a FIFO named like an image": lambda circle: os.mkfifo(circle / "pipe.png"),
    "a dangling link": lambda circle: (circle / "gone.png").symlink_to(circle / "nowhere.png"),
    "a looping link": lambda circle: (circle / "loop.png").symlink_to(circle / "loop.png"),
    "a name that is not UTF-8": lambda circle: shutil.copy(circle / "000.png", os.fsencode(circle) + b"/caf\xe9.png"),
}


@pytest.mark.slow
@pytest.mark.parametrize("odd", list(ODD_FILES))
def test_odd_files_in_a_folder_are_skipped_or_read_never_hang_or_crash(tmp_path: Path, odd: str) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=8)
    ODD_FILES[odd](root / "circle")
    command = [sys.executable, "-m", "mnist_gan", "main", "--dataset", "folder", "--data-dir", str(root),
               "--img-size", "16", "--run-dir", str(tmp_path / "run"), *TINY_RUN[:4], "--batch-size", "8",
               *TINY_RUN[6:]]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)  # a FIFO used to block forever
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    if odd == "a name that is not UTF-8":
        assert "skipped" not in result.stderr and "decoding 25 images" in result.stderr
    else:
        assert "skipped 1 of 25 image files that could not be read" in result.stderr, result.stderr


def test_a_file_where_the_cache_folder_goes_sends_the_cache_to_the_user_cache(
    tmp_path: Path, private_user_cache: Path
) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=40)
    (root / cache.CACHE_DIR).write_text("not a folder")
    images, _ = folder.load_all(root, img_size=16)
    assert len(images) == 120 and (root / cache.CACHE_DIR).read_text() == "not a folder"
    assert cache.cache_dir(root).parent == private_user_cache / "mnist_gan"
    assert list(cache.cache_dir(root).glob("images_16px_*.images.npy"))
    result = runner.invoke(app, ["train-evaluator", "--dataset", "folder", "--data-dir", str(root), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert (cache.cache_dir(root) / "evaluator_folder.pt").is_file()


def run_on_read_only_mount(source: Path, mount: Path, script: str) -> subprocess.CompletedProcess:
    """Run a shell script with `source` bind-mounted read-only at `mount`, in a private mount namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    mount.mkdir(parents=True, exist_ok=True)
    wrapped = f"mount --bind -o ro {source} {mount} || exit 99\n{script}"
    namespace = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    result = subprocess.run([*namespace, "sh", "-c", wrapped], capture_output=True, text=True, timeout=300)
    if result.returncode == 99:
        pytest.skip(f"cannot bind-mount here: {result.stderr.strip()}")
    return result


@pytest.mark.slow
def test_a_read_only_data_folder_is_decoded_once_and_its_evaluator_kept_in_the_user_cache(
    tmp_path: Path, private_user_cache: Path
) -> None:
    """A real read-only mount: the first run decodes and caches in the user's cache, the second reads it (no
    decoding, no warning); train-evaluator saves there, and an --out it cannot write is refused before the work."""
    source = make_shapes_folder(tmp_path / "shapes", per_class=40)
    mount = tmp_path / "mounted"
    cli = f"{sys.executable} -m mnist_gan"
    flags = f"--dataset folder --data-dir {mount} --img-size 16 {' '.join(TINY_RUN)}"
    script = (
        f"{cli} main {flags} --run-dir {tmp_path / 'run1'} && {cli} main {flags} --run-dir {tmp_path / 'run2'} "
        f"&& {cli} train-evaluator --dataset folder --data-dir {mount} --epochs 1 "
        f"&& {{ {cli} train-evaluator --dataset folder --data-dir {mount} --out {mount}/evaluator.pt; echo refused $?; }}"
    )
    result = run_on_read_only_mount(source, mount, script)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("at 16 px") == 1, result.stderr  # the second run read the cache
    assert "could not cache" not in result.stderr and "WARNING" not in result.stderr, result.stderr
    assert "refused 2" in result.stdout and "cannot write to" in result.stderr  # a usage error, at once
    assert result.stderr.count("evaluator epoch 1/1") == 1  # the refused one trained nothing
    assert not (source / cache.CACHE_DIR).exists()
    assert len(list((private_user_cache / "mnist_gan").glob("mounted-*/evaluator_folder.pt"))) == 1


def test_resuming_on_another_folder_is_refused_before_anything_is_cached(tmp_path: Path) -> None:
    root = make_shapes_folder(tmp_path / "shapes", per_class=8)
    run_dir = tmp_path / "run"
    flags = ["--dataset", "folder", "--img-size", "16", *TINY_RUN[:4], "--batch-size", "8", *TINY_RUN[6:]]
    result = runner.invoke(app, ["main", "--data-dir", str(root), "--run-dir", str(run_dir), *flags])
    assert result.exit_code == 0, result.output
    other = make_shapes_folder(tmp_path / "other", per_class=9, seed=1)
    result = runner.invoke(app, ["main", "--resume", "--run-dir", str(run_dir), "--data-dir", str(other),
                                 "--epochs", "2"])  # fmt: skip
    assert_clean_failure(result, 1, "the training data changed since this run started")
    assert not (other / cache.CACHE_DIR).exists() and not cache.cache_dir(other).exists()


def test_a_relative_data_dir_is_saved_as_the_folder_it_names(tmp_path: Path, monkeypatch) -> None:
    make_shapes_folder(tmp_path / "shapes", per_class=8)
    monkeypatch.chdir(tmp_path)
    flags = ["--dataset", "folder", "--img-size", "16", *TINY_RUN[:4], "--batch-size", "8", *TINY_RUN[6:]]
    result = runner.invoke(app, ["main", "--data-dir", "shapes", "--run-dir", "run", *flags])
    assert result.exit_code == 0, result.output
    saved = formats.load(tmp_path / "run" / "generator.pth")["config"]["data_dir"]
    assert saved == str(tmp_path / "shapes")


def test_celeba_list_files_that_are_empty_or_damaged_are_named(tmp_path: Path) -> None:
    root = write_celeba(tmp_path / "data")
    partition = root / "celeba" / "list_eval_partition.txt"
    attributes = root / "celeba" / "list_attr_celeba.txt"
    attributes.write_text(attributes.read_text()[:40])  # truncated: not read (CelebA's attributes are not used)
    images, _ = load_dataset("celeba", root, img_size=16)
    assert len(images) == 4
    for content, phrase in (("", "list_eval_partition.txt is empty"),
                            ("000001.jpg\n", "line 1 should be 'IMAGE.jpg 0|1|2'"),
                            ("000001.jpg 2\n", "lists no images of partition 0")):  # fmt: skip
        partition.write_text(content)
        with pytest.raises(DataError, match=phrase):
            load_dataset("celeba", root, img_size=16)
        result = runner.invoke(app, ["main", "--dataset", "celeba", "--data-dir", str(root), "--no-download",
                                     "--run-dir", str(tmp_path / "run")])  # fmt: skip
        assert_clean_failure(result, 1, phrase)


@pytest.mark.parametrize("background, colour", [("white", (255, 255, 255)), ("black", (0, 0, 0)),
                                                ("10,200,30", (10, 200, 30))])  # fmt: skip
def test_transparency_is_composited_onto_the_background_not_dropped(tmp_path: Path, background: str, colour) -> None:
    """What a file stores under transparent pixels (orange here) never shows: alpha, palette and colour-key
    transparency are composited onto --background."""
    root = make_shapes_folder(tmp_path / "shapes", per_class=4)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (255, 128, 0)  # orange, fully transparent
    Image.fromarray(rgba, "RGBA").save(root / "circle" / "alpha.png")
    Image.fromarray(rgba, "RGBA").convert("P").save(root / "circle" / "palette.png", transparency=0)
    images, _ = folder.load_all(root, img_size=8, background=background_colour(background))
    for index in (4, 5):  # circle/alpha.png, circle/palette.png sort after circle/003.png
        assert images[index].flatten(1).float().mean(1).round().tolist() == list(colour), index
    with pytest.raises(ConfigError, match="background must be white, black or R,G,B"):
        Config(background="orange")
    assert_clean_failure(runner.invoke(app, ["main", "--background", "300,0,0"]), 2, "--background")


def test_real_emoji_decode_onto_white_without_a_library_warning(private_user_cache: Path) -> None:
    """The real, read-only emoji folder: its cache goes to the user's cache, Pillow's palette warning does not reach
    the user, and the transparent corners come out white instead of the colours stored under them."""
    emoji = DATA_DIR / "emoji"
    if not emoji.is_dir():
        pytest.skip(f"no emoji folder in {DATA_DIR}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any library warning fails the test
        images, labels = folder.load_all(emoji, img_size=32)
    assert len(images) == 3781 and int(labels.max()) == 8
    corners = images[:, :, :2, :2].flatten(1).float().mean(1)
    assert (corners > 250).float().mean() > 0.45, (corners > 250).float().mean()  # about half the emoji fill them
    assert not (emoji / cache.CACHE_DIR).exists()


def test_one_folder_has_one_cache_however_its_path_is_spelled_and_the_advice_names_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """../emoji and /abs/emoji were two user caches (and two evaluators); the advice for a missing evaluator in the
    user cache named the cache as --data-dir."""
    data = make_shapes_folder(tmp_path / "data" / "shapes", per_class=4)
    data.chmod(0o555)  # read-only: the user cache
    monkeypatch.chdir(tmp_path / "data")
    assert (
        cache.cache_dir("shapes")
        == cache.cache_dir(data)
        == cache.cache_dir(tmp_path / "data" / ".." / "data" / "shapes")
    )
    with pytest.raises(NoEvaluator, match="--data-dir shapes`"):
        quality_meter("folder", "shapes")
    data.chmod(0o755)
