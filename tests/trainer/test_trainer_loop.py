"""proxy_train on the real digits tree: it learns, it is reproducible, it resumes, it survives divergence."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from search_space import ArchSpec
from trainer import DataError, ProxyResult, Schedule, SubsetSpec, proxy_train, score_on_val, write_digits_tree
from trainer.augment import Normalizer, crop_params
from trainer.loop import build_optimizer

SPEC = ArchSpec(backbone="resnet18")
# small and fast: a quarter-width ResNet-18 at 32 px, 40 training images per class
QUICK = Schedule(epochs=2, batch_size=64, lr=0.1, width_mult=0.25, augment="pad_crop", flip=False)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("digits")
    return write_digits_tree(base / "tree"), base / "cache"


def small(digits) -> SubsetSpec:
    return SubsetSpec(root=str(digits[0]), train_per_class=40, holdout_per_class=20, resolution=32)


def metrics(result: ProxyResult) -> list[tuple[float, float, float]]:
    return [(h.train_loss, h.top1, h.top5) for h in result.history]


@pytest.fixture(scope="module")
def learned(digits, tmp_path_factory) -> tuple[SubsetSpec, ProxyResult, list]:
    """One real 4-epoch run on all of digits (checkpointed), shared by the learning and val/ tests."""
    subset = SubsetSpec(root=str(digits[0]), holdout_per_class=30, resolution=32)
    seen: list = []
    result = proxy_train(SPEC, subset, replace(QUICK, epochs=4), cache_dir=digits[1], on_epoch=seen.append,
                         checkpoint_dir=tmp_path_factory.mktemp("runs"))
    return subset, result, seen


def test_a_thin_resnet18_learns_digits(learned):
    _, result, seen = learned
    assert result.status == "ok" and result.epochs == 4 and len(seen) == 4
    assert result.top1 >= 0.90, result.history
    assert result.top5 >= result.top1 and result.images_per_s > 0 and result.seconds > 0
    assert seen[-1].train_loss < seen[0].train_loss
    assert set(result.to_dict()) >= {"top1", "top5", "epochs", "seconds", "images_per_s", "status"}


def test_val_is_scored_only_on_request_with_the_trained_labels(learned, tmp_path):
    subset, result, _ = learned
    val = Path(subset.root) / "val"
    final = score_on_val(SPEC, subset, replace(QUICK, epochs=4), result.checkpoint)
    assert final.images == len(list(val.glob("*/*.JPEG"))) and final.skipped == ()
    assert final.top1 >= 0.85  # labels in the training order: a shuffled mapping would score ~10%
    assert final.top5 >= final.top1

    # a copy whose val/ lacks one class and holds one corrupt file: scored on the rest, the file listed
    tree = tmp_path / "tree"
    shutil.copytree(subset.root, tree)
    shutil.rmtree(tree / "val" / "9")
    broken = sorted((tree / "val" / "3").iterdir())[0]
    broken.write_bytes(b"not a jpeg")
    partial = score_on_val(SPEC, replace(subset, root=str(tree)), replace(QUICK, epochs=4), result.checkpoint)
    assert partial.skipped == (str(broken),)
    assert partial.images == final.images - len(list((val / "9").iterdir())) - 1

    shutil.rmtree(tree / "val")
    with pytest.raises(DataError, match="val"):
        score_on_val(SPEC, replace(subset, root=str(tree)), QUICK, result.checkpoint)
    with pytest.raises(DataError, match="checkpoint"):
        score_on_val(SPEC, subset, QUICK, tmp_path / "missing.pt")


def test_same_seed_same_metrics_other_seed_other_metrics(digits):
    first = proxy_train(SPEC, small(digits), QUICK, cache_dir=digits[1])
    second = proxy_train(SPEC, small(digits), QUICK, cache_dir=digits[1])
    other = proxy_train(SPEC, small(digits), replace(QUICK, seed=1), cache_dir=digits[1])
    assert metrics(first) == metrics(second)
    assert metrics(other) != metrics(first)


def test_a_run_killed_after_an_epoch_resumes_to_the_same_result(digits, tmp_path):
    schedule = replace(QUICK, epochs=3, augment="random_resized_crop", flip=True)
    whole = proxy_train(SPEC, small(digits), schedule, cache_dir=digits[1], checkpoint_dir=tmp_path / "a")

    class Preempted(Exception):
        pass

    def kill_after_first(stats):
        if stats.epoch == 1:
            raise Preempted

    with pytest.raises(Preempted):
        proxy_train(
            SPEC, small(digits), schedule, cache_dir=digits[1], checkpoint_dir=tmp_path / "b", on_epoch=kill_after_first
        )
    epochs_after_resume = []
    resumed = proxy_train(
        SPEC,
        small(digits),
        schedule,
        cache_dir=digits[1],
        checkpoint_dir=tmp_path / "b",
        on_epoch=lambda s: epochs_after_resume.append(s.epoch),
    )
    # epoch 1 again (its callback was interrupted: at least once per epoch), then the epochs it trains
    assert epochs_after_resume == [1, 2, 3] and resumed.resumed_at == 1 and whole.resumed_at == 0
    assert metrics(resumed) == metrics(whole) and resumed.top1 == whole.top1
    saved = torch.load(resumed.checkpoint, weights_only=True)
    assert saved["epoch"] == 3 and "model" in saved
    again = proxy_train(
        SPEC,
        small(digits),
        schedule,
        cache_dir=digits[1],
        checkpoint_dir=tmp_path / "b",
        on_epoch=lambda s: pytest.fail("a finished run must not train again"),
    )
    assert metrics(again) == metrics(whole)


def test_an_absurd_learning_rate_returns_diverged(digits, tmp_path):
    schedule = replace(QUICK, lr=1e12, warmup_epochs=0, epochs=2)
    result = proxy_train(SPEC, small(digits), schedule, cache_dir=digits[1], checkpoint_dir=tmp_path)
    assert result.status == "diverged" and result.top1 == 0.0 and result.epochs == 1
    again = proxy_train(SPEC, small(digits), schedule, cache_dir=digits[1], checkpoint_dir=tmp_path)
    assert again.status == "diverged"


def test_augmentation_is_per_sample_and_pad_crop_shifts_whole_pixels():
    gen = torch.Generator().manual_seed(0)
    theta = crop_params(64, 32, gen, kind="random_resized_crop")
    assert theta[:, 0, 0].unique().numel() > 32 and (theta[:, 0, 0] < 0).any()  # own scale, some flipped
    images = torch.arange(32 * 32 * 3, dtype=torch.float32).view(1, 32, 32, 3).repeat(8, 1, 1, 1)
    images = (images % 251).to(torch.uint8)
    theta = crop_params(8, 32, gen, kind="pad_crop", flip=False)
    normalize = Normalizer(torch.device("cpu"), channels_last=False)
    out, plain = normalize(images, theta, nearest=True), normalize(images)
    for i in range(8):
        dx, dy = (theta[i, :, 2] * 16).round().int().tolist()
        ys, xs = slice(max(0, -dy), 32 - max(0, dy)), slice(max(0, -dx), 32 - max(0, dx))
        src = plain[i][:, ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx]
        assert torch.equal(out[i][:, ys, xs], src)


def test_schedule_warms_up_then_decays_to_zero_and_round_trips():
    schedule = Schedule(epochs=4, lr=0.4, warmup_epochs=1)
    lrs = [schedule.lr_at(step, 10) for step in range(40)]
    assert lrs[0] == pytest.approx(0.04) and lrs[9] == pytest.approx(0.4)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:])) and lrs[-1] < 0.01
    assert Schedule.from_dict(schedule.to_dict()) == schedule
    assert Schedule(lr=0.3).id != Schedule().id


def test_norms_and_biases_get_no_weight_decay():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    decayed, plain = build_optimizer(model, Schedule(weight_decay=1e-4)).param_groups
    assert decayed["weight_decay"] == 1e-4 and all(p.ndim > 1 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and len(plain["params"]) == 4  # conv bias, bn weight+bias, fc bias
    assert decayed["nesterov"] is True


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on CPU needs a C++ compiler (install g++ to run this test)")
def test_torch_compile_option_trains_the_same_network(digits, monkeypatch):
    """`Schedule.compile` wraps the forward pass: same seed, same data, the same losses up to kernel rounding.

    Dynamo and AOT autograd trace forward and backward as in real use; the "aot_eager" backend skips only
    inductor's C++ code generation (~60 s cold on 2 cores, torch's own to test, not ours).
    """
    schedule = replace(QUICK, epochs=1)
    from torch._dynamo.utils import counters

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend="aot_eager", **kw))

    # 320 images: whole batches of 64 only, so dynamo compiles one graph (a short last batch recompiles)
    subset = replace(small(digits), train_per_class=32)
    eager = proxy_train(SPEC, subset, schedule, cache_dir=digits[1])
    graphs = counters["stats"]["unique_graphs"]
    compiled = proxy_train(SPEC, subset, replace(schedule, compile=True), cache_dir=digits[1])
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo really compiled the forward pass
    assert compiled.status == "ok"
    assert compiled.history[0].train_loss == pytest.approx(eager.history[0].train_loss, rel=0.02)


def test_train_seeds_means_k_runs_and_stops_them_where_the_first_stopped(digits):
    """Two seeds: each its own run (different top-1 curves), the mean is theirs; a stop at epoch 1 of the
    first seed stops the second there too, so the mean compares like with like."""
    from trainer import train_seeds

    schedule = replace(QUICK, epochs=2, seeds=2)
    mean, runs = train_seeds(SPEC, small(digits), schedule, cache_dir=digits[1])
    assert runs[0].history[0].train_loss != runs[1].history[0].train_loss
    assert mean.seed_top1 == (runs[0].top1, runs[1].top1)
    assert mean.top1 == pytest.approx((runs[0].top1 + runs[1].top1) / 2)
    assert [h.epoch for h in mean.history] == [1, 2]
    assert mean.seconds == pytest.approx(runs[0].seconds + runs[1].seconds)
    stopped, runs = train_seeds(SPEC, small(digits), schedule, cache_dir=digits[1], on_epoch=lambda s: False)
    assert stopped.status == "stopped" and stopped.epochs == 1
    assert [r.status for r in runs] == ["stopped", "stopped"] and [r.epochs for r in runs] == [1, 1]
    # run keys made before `seeds` existed stay valid: the default is left out of the key
    assert "seeds" not in Schedule().to_dict() and schedule.to_dict()["seeds"] == 2


def test_stop_ends_the_run_at_the_next_step_and_writes_no_checkpoint_after_it(digits, tmp_path):
    """A study worker whose trial was taken over asks to stop: Cancelled at once, the last checkpoint untouched
    (the run folder belongs to the retry now)."""
    from trainer import Cancelled

    schedule = replace(QUICK, epochs=3)
    asked: list[int] = []
    taken = {"over": False}

    def stop() -> bool:
        asked.append(1)
        return taken["over"]

    def on_epoch(stats) -> None:
        taken["over"] = stats.epoch == 1  # taken over during epoch 1's callback

    with pytest.raises(Cancelled, match="epoch 2 at step 0"):
        proxy_train(SPEC, small(digits), schedule, cache_dir=digits[1], checkpoint_dir=tmp_path, on_epoch=on_epoch,
                    stop=stop)
    (checkpoint,) = tmp_path.glob("*/checkpoint.pt")
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    steps = small(digits).train_per_class * 10 // QUICK.batch_size
    assert len(asked) == steps + 1 + 1  # every step of epoch 1, its checkpoint, the first step of epoch 2

    with pytest.raises(Cancelled):  # stopped from the start: nothing is written at all
        proxy_train(SPEC, small(digits), schedule, cache_dir=digits[1], checkpoint_dir=tmp_path / "b",
                    stop=lambda: True)
    assert not list((tmp_path / "b").glob("*/checkpoint.pt"))
