"""The evaluator and the quality metrics on real data, and their outputs during training, in evaluate and compare."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from helpers import RunsCode, forbidden, quick_config, read_events
from mnist_gan import formats, metrics, train
from mnist_gan.__main__ import app
from mnist_gan.data import cache, fixed_subset, load_dataset
from mnist_gan.evaluator import evaluator_path, load_evaluator, train_evaluator
from mnist_gan.metrics import METRICS, QualityMeter, quality_meter, sample_shares
from mnist_gan.sampling import labels_in_shares

N = 2000


@pytest.fixture(scope="module")
def meter(data_dir: Path) -> QualityMeter:
    return quality_meter("mnist", data_dir)


@pytest.fixture(scope="module")
def train_images(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("mnist", data_dir, train=True)


def test_evaluator_accuracy_on_a_test_slice(data_dir: Path) -> None:
    evaluator, metadata = load_evaluator("mnist", evaluator_path("mnist", data_dir))
    images, labels = load_dataset("mnist", data_dir, train=False)
    _, logits = evaluator.embed(images[:3000])
    assert (logits.argmax(1) == labels[:3000]).float().mean() >= 0.985
    assert metadata["test_accuracy"] >= 0.99
    assert evaluator.shape["blocks"] == 2  # a file from before the third block: two, as it was built


def test_a_mirrored_evaluator_cannot_tell_a_class_from_its_mirror_image(tmp_path: Path) -> None:
    """train_evaluator(mirror=True) shows half of each batch mirrored, so that a garment's class does not hang on
    which way it faces: classes that differ only by their mirror image (a bright left or right half) become one to
    it, and it gives them even odds, where without it it tells them apart for sure. blocks sets its depth."""
    rng = np.random.default_rng(0)
    for side, name in ((slice(0, 16), "left"), (slice(16, 32), "right")):
        (tmp_path / name).mkdir()
        for index in range(60):
            pixels = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            pixels[:, side] += 160
            Image.fromarray(pixels).save(tmp_path / name / f"{index:03}.png")
    test_images, _ = load_dataset("folder", tmp_path, train=False, img_size=32)
    plain, plain_accuracy = train_evaluator("folder", tmp_path, epochs=10)
    mirrored, _ = train_evaluator("folder", tmp_path, epochs=10, blocks=2, mirror=True)
    assert plain.shape["blocks"] == 3 and mirrored.shape["blocks"] == 2
    confidence = {name: model.embed(test_images)[1].softmax(1).max(1).values.mean().item()
                  for name, model in (("plain", plain), ("mirrored", mirrored))}  # fmt: skip
    assert plain_accuracy == 1.0 and confidence["plain"] > 0.95
    assert confidence["mirrored"] < 0.75  # even odds are 0.5


@pytest.mark.parametrize("blocks", [7, "3", 2.0])
def test_an_evaluator_file_with_a_block_count_we_never_build_is_refused(data_dir: Path, tmp_path: Path, blocks) -> None:
    payload = torch.load(evaluator_path("mnist", data_dir), weights_only=True)
    payload["shape"] = {**payload.get("shape", {}), "blocks": blocks}
    torch.save(payload, tmp_path / "evaluator_mnist.pt")
    with pytest.raises(formats.CheckpointError, match="is not an evaluator file"):
        load_evaluator("mnist", tmp_path / "evaluator_mnist.pt")


def test_real_collapsed_and_noise_images_rank_as_they_should(meter: QualityMeter, train_images) -> None:
    images, labels = train_images
    real = meter.score(images[torch.randperm(len(images), generator=torch.Generator().manual_seed(1))[:N]])
    sevens = images[labels == 7]
    collapsed = meter.score(sevens[torch.arange(N) % 20])  # one class, twenty distinct images
    noise = meter.score(torch.rand(N, 1, 28, 28) * 2 - 1)

    reference = meter.reference
    assert set(reference) == set(METRICS) and reference["inception_score"] > 9.5
    # Real against real sits near the reference (FID is biased upward at 2,000 samples).
    assert real["fid"] < 5 * reference["fid"] and real["inception_score"] > 9.3
    assert real["classes_covered"] == 10 and real["class_kl"] < 0.01
    assert real["precision"] > 0.75 and real["recall"] > 0.75 and real["coverage"] > 0.4
    # One repeated digit: far worse on FID, classes, class KL, recall and coverage.
    assert collapsed["fid"] > 20 * real["fid"]
    assert collapsed["classes_covered"] == 1 and collapsed["class_kl"] > 2.0
    assert collapsed["recall"] < 0.1 and collapsed["coverage"] < 0.1 < real["coverage"]
    assert collapsed["inception_score"] < 1.5
    # Noise is worst of all on FID, KID and precision.
    assert noise["fid"] > collapsed["fid"] and noise["kid"] > collapsed["kid"] > real["kid"]
    assert noise["precision"] < 0.05 and noise["density"] < 0.05


@pytest.mark.slow  # a second real side, at 16 px: the slowest of the quick tests (22 s with AVX2 kernels)
def test_a_smaller_generator_is_scored_against_the_data_at_its_own_size(meter: QualityMeter, data_dir: Path) -> None:
    """A 16 px generator of MNIST is compared with MNIST at 16 px, both sides resized alike by the evaluator, and
    its reference is measured there: against the 28 px digits a perfect one (the training images at 16 px) would
    score as a blurred copy. Each size keeps its own cached real side, the reference with it."""
    small = quality_meter("mnist", data_dir, img_size=16)
    with pytest.MonkeyPatch.context() as patch:  # the second start reads the reference back, as the real side
        patch.setattr(QualityMeter, "score", forbidden("the reference was measured again"))
        assert quality_meter("mnist", data_dir, img_size=16).reference == small.reference
    copy = fixed_subset(load_dataset("mnist", data_dir, img_size=16)[0], N)
    at_its_size, against_28_px = small.score(copy), meter.score(copy)
    assert small.reference["fid"] != meter.reference["fid"] and at_its_size["fid"] < 5 * small.reference["fid"]
    assert against_28_px["fid"] > 3 * at_its_size["fid"], (against_28_px, at_its_size)
    for size in (16, 28):
        assert len(list(cache.cache_dir(data_dir).glob(f"real_side_mnist_{size}px_*.pt"))) == 1


def test_training_logs_metrics_and_keeps_best(trained_run: Path) -> None:
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [record["epoch"] for record in records] == [0, 1]
    assert all(set(METRICS) <= set(record) for record in records)
    events = read_events(trained_run)
    for name in METRICS:
        assert len(events.Scalars(f"metrics/{name}")) == 2
    best_record = min(records, key=lambda record: record["fid"])
    best = formats.load(trained_run / "best.pt")
    assert best["epochs_done"] == best_record["epoch"] + 1  # the epoch with the lowest FID, not the last one
    assert best["best_fid"] == best_record["fid"]


def test_evaluate_prints_every_metric_beside_the_reference(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --data-dir (and elsewhere than the run's folder) it scores against the data the run trained on."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "scores.json"
    arguments = ["evaluate", "--run-dir", str(trained_run), "--num-images", "500", "--json", str(out)]
    result = CliRunner().invoke(app, arguments, env={"MNIST_GAN_DATA_DIR": None})
    assert result.exit_code == 0, result.output
    for name in METRICS:
        assert name in result.output
    assert "real data (reference)" in result.output
    scores = json.loads(out.read_text())
    assert scores["source"].endswith("best.pt") and scores["num_images"] == 500
    assert set(scores["metrics"]) == set(METRICS) == set(scores["reference"])


def test_evaluate_scores_an_npz_from_generate(trained_run: Path, tmp_path: Path, data_dir: Path) -> None:
    runner = CliRunner()
    npz = tmp_path / "fake.npz"
    assert (
        runner.invoke(
            app, ["generate", "--run-dir", str(trained_run), "--num-images", "300", "--out", str(npz)]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        app, ["evaluate", "--images", str(npz), "--data-dir", str(data_dir), "--json", str(tmp_path / "s.json")]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["num_images"] == 300 and set(scores["metrics"]) >= set(METRICS)
    assert all(np.isfinite(scores["metrics"][name]) for name in METRICS) and scores["reference"]["fid"] > 0


def test_compare_two_runs(trained_run: Path, tmp_path: Path, data_dir: Path) -> None:
    other = train(quick_config(tmp_path / "mlp", arch="mlp", lr=1e-3))
    out, markdown = tmp_path / "comparison.png", tmp_path / "comparison.md"
    result = CliRunner().invoke(
        app, ["compare", str(trained_run), str(other), "--out", str(out), "--markdown", str(markdown)]
    )
    assert result.exit_code == 0, result.output
    table = markdown.read_text()
    header = table.splitlines()[0]
    for column in ("arch", "lr", "best_fid", "final_fid", "final_is", "final_coverage", "best_epoch", "minutes"):
        assert column in header
    assert "batch_size" not in header  # equal settings are left out
    assert "dcgan" in table and "mlp" in table
    with Image.open(out) as figure:
        assert figure.size == (1600, 450)


def untrained_inception_weights(folder: Path) -> Path:
    """A weights file in the format torch-fidelity reads, holding a random initialisation: the real weights are a
    download away, which no machine here has; the code path (load, resize to 299, embed, FID) is the same."""
    feature_extractor = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

    class Untrained(feature_extractor.FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, *args, **kwargs):  # keep the random initialisation
            return None

    torch.save({}, folder / "empty.pt")
    network = Untrained("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(folder / "empty.pt"))
    torch.save(network.state_dict(), folder / "inception.pth")
    return folder / "inception.pth"


@pytest.mark.slow
def test_inception_fid_scores_a_run_without_an_evaluator(tmp_path: Path) -> None:
    """--inception-fid on a folder without classes (no evaluator): each evaluation records the standard FID, best.pt
    follows it, and evaluate --inception-fid prints it."""
    pytest.importorskip("torch_fidelity")
    weights = untrained_inception_weights(tmp_path)
    flat = tmp_path / "flat"
    flat.mkdir()
    generator = np.random.default_rng(0)
    for number in range(40):
        Image.fromarray(generator.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(flat / f"{number}.png")
    config = quick_config(tmp_path / "run", dataset="folder", data_dir=str(flat), img_size=16, batch_size=8,
                          max_batches=2, epochs=1, eval_samples=100, inception_fid=True,
                          inception_weights=str(weights))  # fmt: skip
    run_dir = train(config)
    record = json.loads((run_dir / "metrics.jsonl").read_text())
    assert set(record) >= {"inception_fid", "eval_seconds"} and "fid" not in record
    assert np.isfinite(record["inception_fid"]) and (run_dir / "best.pt").is_file()
    result = CliRunner().invoke(app, ["evaluate", "--run-dir", str(run_dir), "--num-images", "100",
                                      "--inception-fid", "--inception-weights", str(weights)])  # fmt: skip
    assert result.exit_code == 0 and "inception_fid" in result.output, result.output


@pytest.mark.slow
def test_inception_runs_channels_last_with_the_plain_layouts_features(tmp_path: Path) -> None:
    """InceptionFid turns Inception's convolutions channels-last (1.5-1.9x as fast on a CPU): the features must be the
    plain layout's, to float32's rounding."""
    from mnist_gan.inception import InceptionFid, as_rgb_uint8, load_inception_fid

    weights = str(untrained_inception_weights(tmp_path))
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    meter, plain = InceptionFid(images, load_inception_fid(weights)), load_inception_fid(weights)
    assert meter.metric.inception.Conv2d_1a_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        fast, reference = (metric.inception(as_rgb_uint8(images)) for metric in (meter.metric, plain))
    assert torch.allclose(fast, reference, rtol=1e-4, atol=1e-5 * reference.abs().max().item())


def test_inception_fid_without_its_weights_warns_and_training_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "nowhere.pth"
    run_dir = train(quick_config(tmp_path / "run", epochs=1, max_batches=2, inception_fid=True,
                                 inception_weights=str(missing)))  # fmt: skip
    assert "Inception FID is off" in caplog.text and str(missing) in caplog.text
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert "fid" in record and "inception_fid" not in record  # the evaluator's metrics are still there
    result = CliRunner().invoke(app, ["evaluate", "--run-dir", str(run_dir), "--num-images", "100",
                                      "--inception-fid", "--inception-weights", str(missing)])  # fmt: skip
    assert result.exit_code == 1 and "do not exist" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("written_by", ["pickle", "torch.save"])
def test_inception_weights_that_ask_for_code_run_nothing(
    trained_run: Path, tmp_path: Path, written_by: str, caplog: pytest.LogCaptureFixture
) -> None:
    """torch-fidelity loads its weights with weights_only=False: we read them as tensors first, and a file that asks
    for code is refused in evaluate and turns the Inception FID off in training, without running it."""
    pytest.importorskip("torch_fidelity")
    marker, weights = tmp_path / "ran", tmp_path / "weights.pth"
    crafted = {"Conv2d_1a_3x3.conv.weight": RunsCode(marker)}
    weights.write_bytes(pickle.dumps(crafted)) if written_by == "pickle" else torch.save(crafted, weights)
    result = CliRunner().invoke(app, ["evaluate", "--run-dir", str(trained_run), "--num-images", "100",
                                      "--inception-fid", "--inception-weights", str(weights)])  # fmt: skip
    assert result.exit_code == 1 and "is not a file of Inception weights" in result.output, result.output
    run_dir = train(quick_config(tmp_path / "run", epochs=1, max_batches=2, inception_fid=True,
                                 inception_weights=str(weights)))  # fmt: skip
    assert "Inception FID is off" in caplog.text and (run_dir / "generator.pth").is_file()
    assert not marker.exists(), "the weights file's code ran"


def test_the_real_side_is_cached_checked_and_recomputed_when_damaged(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedding the 10,000 test images and their k-NN radii took about 5 s of every run's start: it is cached
    under the evaluator's and the images' digest, read back only when it is what we wrote."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # ../shared/data is read-only: the user's cache
    stale = cache.cache_dir(data_dir) / "real_side_mnist_28px_0123456789abcdef.pt"  # another evaluator's, say
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    first = quality_meter("mnist", data_dir)
    (cached,) = list((tmp_path / "mnist_gan").rglob("real_side_mnist_28px_*.pt"))  # the stale one is gone
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics, "real_radii", forbidden("the real side was computed again"))
        again = quality_meter("mnist", data_dir)
    assert torch.equal(again.test_features, first.test_features) and torch.equal(
        again.test_radii[1], first.test_radii[1]
    )
    cached.write_bytes(b"not a torch file")
    assert metrics.read_real_side(cached, 10_000) is None  # computed again, as the first time
    foreign = {"features": torch.zeros(5, 128), "radii3": torch.zeros(5), "radii5": torch.zeros(5), "reference": {}}
    torch.save(foreign, cached)
    assert metrics.read_real_side(cached, 10_000) is None and metrics.read_real_side(cached, 5) is not None
    torch.save({**foreign, "reference": {"fid": "3.2"}}, cached)  # a reference is numbers, or not ours
    assert metrics.read_real_side(cached, 5) is None


def test_a_conditional_generator_is_scored_in_the_test_split_s_class_shares(data_dir: Path) -> None:
    """A class-balanced sample of unbalanced data scores the class mix, not only the images (the emoji: 60% one
    class; MNIST: 8.9% to 11.4%)."""
    assert torch.bincount(labels_in_shares(10, torch.tensor([6.0, 3.0, 1.0]))).tolist() == [6, 3, 1]
    assert torch.bincount(labels_in_shares(7, torch.tensor([0.5, 0.5]))).tolist() in ([4, 3], [3, 4])
    assert torch.bincount(labels_in_shares(1000, torch.tensor([2261.0, 85.0, 159.0])), minlength=3).sum() == 1000
    meter = quality_meter("mnist", data_dir)
    test_labels = load_dataset("mnist", data_dir, train=False)[1]
    torch.testing.assert_close(sample_shares([meter]), torch.bincount(test_labels).double() / len(test_labels))
    counts = torch.bincount(labels_in_shares(10_000, sample_shares([meter])))
    assert counts.tolist() == torch.bincount(test_labels).tolist()  # 1,135 ones, 892 fives
    assert sample_shares([]) is None  # no evaluator: classes in turn
