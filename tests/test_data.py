"""CIFAR-10 loading, checking, subsets and on-device augmentation."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bopsweep.errors import UserError
from bopsweep.trial import cifar_files as data
from bopsweep.trial.cifar_files import (
    Split,
    load_cifar10,
    resolve_data_dir,
    stratified_subset,
    write_cifar10,
)
from bopsweep.trial.data import DeviceData, augment_batch


def tiny_split(n: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    return Split(images, (np.arange(n) % 10).astype(np.int64))


def test_written_files_load_back_exactly_through_the_real_loader(tmp_path):
    train, test = tiny_split(53), tiny_split(20, seed=1)
    folder = write_cifar10(tmp_path, train, test)
    assert sorted(os.listdir(folder)) == sorted([*data.TRAIN_FILES, data.TEST_FILE, data.META_FILE])
    for where in (tmp_path, folder):  # the parent or the folder itself
        got_train, got_test = load_cifar10(where)
        assert got_train.images.dtype == np.uint8 and got_train.images.shape == (53, 3, 32, 32)
        assert np.array_equal(got_train.images, train.images)
        assert np.array_equal(got_train.labels, train.labels)
        assert np.array_equal(got_test.images, test.images)


def test_official_style_pickles_with_bytes_keys_load(tmp_path):
    # The official batches were written by Python 2: keys arrive as bytes or latin-1 strings.
    folder = write_cifar10(tmp_path, tiny_split(10), tiny_split(10))
    batch = {b"data": tiny_split(10).images.reshape(10, -1), b"labels": list(range(10))}
    with (folder / "data_batch_1").open("wb") as f:
        pickle.dump(batch, f, protocol=2)
    train, _ = load_cifar10(folder)
    assert len(train.labels) == 10 + 4 * 2


def rewrite(folder: Path, name: str, obj) -> None:
    with (folder / data.FOLDER / name).open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def good_batch(n: int = 4) -> dict:
    return {"data": np.zeros((n, 3072), np.uint8), "labels": [0] * n}


@pytest.mark.parametrize(
    ("name", "obj", "message"),
    [
        ("data_batch_3", {"labels": [0]}, "no 'data' entry"),
        ("data_batch_3", {"data": np.zeros((2, 3072), np.uint8)}, "no 'labels' entry"),
        ("data_batch_3", {**good_batch(), "data": np.zeros((4, 100), np.uint8)}, "shape"),
        ("data_batch_3", {**good_batch(), "data": np.zeros((4, 3072), np.float32)}, "uint8"),
        (
            "data_batch_3",
            {**good_batch(), "labels": [0, 1, 2, 10]},
            "labels must be integers in 0..9",
        ),
        ("test_batch", {**good_batch(), "labels": [0, 1]}, "2 labels for 4 images"),
        ("batches.meta", {"num_vis": 3072}, "label_names"),
        ("data_batch_1", [1, 2, 3], "not the dict"),
    ],
)
def test_malformed_files_are_named_with_what_is_wrong(tmp_path, name, obj, message):
    write_cifar10(tmp_path, tiny_split(10), tiny_split(10))
    rewrite(tmp_path, name, obj)
    with pytest.raises(UserError, match=message):
        load_cifar10(tmp_path)


def test_missing_files_and_folders_are_reported(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_cifar10(tmp_path / "nowhere")
    with pytest.raises(UserError, match="holds no cifar-10-batches-py"):
        load_cifar10(tmp_path)
    write_cifar10(tmp_path, tiny_split(10), tiny_split(10))
    (tmp_path / data.FOLDER / "data_batch_5").unlink()
    with pytest.raises(UserError, match="data_batch_5 is missing"):
        load_cifar10(tmp_path)
    (tmp_path / data.FOLDER / "data_batch_5").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a CIFAR-10 python pickle"):
        load_cifar10(tmp_path)


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_pickles_that_call_functions_are_refused_without_running_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_cifar10(tmp_path, tiny_split(10), tiny_split(10))
    rewrite(tmp_path, "test_batch", {**good_batch(), "x": Exploit()})
    with pytest.raises(UserError, match="is not allowed"):
        load_cifar10(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_stratified_subset_keeps_class_proportions_and_is_seeded():
    labels = np.repeat(np.arange(10), [500] * 5 + [100] * 5)  # 3000 images, unbalanced
    idx = stratified_subset(labels, 300, seed=0)
    assert len(idx) == 300 and len(set(idx.tolist())) == 300
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.tolist() == [50] * 5 + [10] * 5
    assert np.array_equal(idx, stratified_subset(labels, 300, seed=0))
    assert not np.array_equal(idx, stratified_subset(labels, 300, seed=1))
    assert len(stratified_subset(labels, 7, seed=0)) == 7  # remainders distributed
    with pytest.raises(UserError, match="subset"):
        stratified_subset(labels, 3001, seed=0)


def test_augmentation_is_a_padded_crop_possibly_mirrored():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen)
    out = augment_batch(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    flips = 0
    for i in range(len(x)):
        crops = [
            (padded[i, :, dy : dy + 32, dx : dx + 32], flip)
            for dy in range(9)
            for dx in range(9)
            for flip in (False, True)
        ]
        matches = [f for c, f in crops if torch.equal(out[i], c.flip(2) if f else c)]
        assert matches, f"image {i} is not a (mirrored) crop of the padded image"
        flips += matches[0]
    assert 10 < flips < 54  # about half mirrored


def test_augmentation_depends_on_the_generator_alone():
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    a = augment_batch(x, torch.Generator().manual_seed(5))
    b = augment_batch(x, torch.Generator().manual_seed(5))
    c = augment_batch(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_device_batches_cover_the_split_scaled_to_unit_range():
    split = tiny_split(25)
    dd = DeviceData(split, torch.device("cpu"))
    batches = list(dd.batches(10, torch.Generator().manual_seed(0)))
    assert [len(y) for _, y in batches] == [10, 10, 5]
    xs = torch.cat([x for x, _ in batches])
    assert xs.min() >= -1 and xs.max() <= 1
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(split.labels.tolist())
    first, _ = next(iter(dd.batches(25)))  # unshuffled, unaugmented
    expected = torch.from_numpy(split.images).float() / 127.5 - 1
    assert torch.allclose(first, expected)


def test_failed_download_tells_the_user_to_pass_data_dir(tmp_path, monkeypatch):
    from torchvision.datasets import CIFAR10

    # a real download attempt against a closed local port: fails the way no network does
    monkeypatch.setattr(CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.setenv("BOPSWEEP_DATA", str(tmp_path / "cache"))
    with pytest.raises(UserError, match=r"could not download CIFAR-10.*--data-dir"):
        resolve_data_dir(None, download=True)
    with pytest.raises(UserError, match=r"--data-dir .*--download"):
        resolve_data_dir(None, download=False)
