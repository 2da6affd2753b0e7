"""CIFAR-10's python on-disk format: read, checked, written (numpy only: no torch).

``DIR/cifar-10-batches-py/`` holds ``data_batch_1..5``, ``test_batch`` and ``batches.meta``:
the official files, a subset or a relabelled copy. The loader checks the structure (keys,
shapes, dtype, label range) and reads the pickles with a restricted unpickler that admits only
plain containers, bytes, numbers, strings and numpy arrays. The official archive's md5 sums are
checked only when bopsweep downloads it (through torchvision).

The driver checks a study's data folder and fingerprints it with this module alone, so a
driver never imports torch: its trial processes (or their zygote) do. The tensors a trial
trains on are :mod:`bopsweep.trial.data`.

:func:`write_cifar10` and :func:`make_synthetic` write small data sets in the same format, so
tests load them through this same code.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bopsweep.errors import UserError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
NUM_CLASSES = 10
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_BYTES = 3 * 32 * 32


def default_cache() -> Path:
    """Where ``--download`` puts CIFAR-10: ``$BOPSWEEP_DATA`` or ``~/.cache/bopsweep``."""
    return Path(os.environ.get("BOPSWEEP_DATA", Path.home() / ".cache" / "bopsweep"))


@dataclass
class Split:
    images: np.ndarray  # uint8, (N, 3, 32, 32)
    labels: np.ndarray  # int64, (N,)


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits the globals a pickled numpy array needs, nothing else (no code execution)."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 file")


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise UserError(
            f"{path} is missing: a CIFAR-10 folder needs {', '.join(TRAIN_FILES)}, "
            f"{TEST_FILE} and {META_FILE}"
        )
    try:
        with path.open("rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
    except Exception as e:  # any unreadable pickle is the user's file problem
        raise UserError(f"{path} is not a CIFAR-10 python pickle ({e})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not the dict CIFAR-10 files hold")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batch(path: Path) -> Split:
    batch = _read_pickle(path)
    for key in ("data", "labels"):
        if key not in batch:
            raise UserError(f"{path} has no {key!r} entry (found: {', '.join(map(str, batch))})")
    data, labels = batch["data"], np.asarray(batch["labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise UserError(
            f"{path}: 'data' must be a uint8 numpy array, got "
            f"{getattr(data, 'dtype', type(data).__name__)}"
        )
    if data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise UserError(f"{path}: 'data' must have shape (N, {IMAGE_BYTES}), got {data.shape}")
    if labels.ndim != 1 or len(labels) != len(data):
        raise UserError(f"{path}: {len(labels)} labels for {len(data)} images")
    if not np.issubdtype(labels.dtype, np.integer) or (
        len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES)
    ):
        raise UserError(f"{path}: labels must be integers in 0..{NUM_CLASSES - 1}")
    return Split(data.reshape(-1, 3, 32, 32), labels.astype(np.int64))


def find_folder(data_dir: Path) -> Path:
    """Accept either the extracted folder itself or its parent."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.exists():
        raise UserError(
            f"data dir {data_dir} does not exist; pass --data-dir pointing at an "
            f"extracted {FOLDER} (or its parent)"
        )
    folder = data_dir if (data_dir / TEST_FILE).exists() else data_dir / FOLDER
    if not folder.is_dir():
        raise UserError(
            f"{data_dir} holds no {FOLDER} folder; pass --data-dir pointing at an "
            f"extracted {FOLDER} (or its parent)"
        )
    return folder


# Data sets loaded ahead by a warm-start zygote (bopsweep.driver.zygote), for the trial
# processes it forks to share copy-on-write: folder -> (identity of its files, (train, test)).
_PRELOADED: dict[Path, tuple[tuple[Any, ...], tuple[Split, Split]]] = {}


def _identity(folder: Path) -> tuple[Any, ...]:
    """What says a folder's files are the ones loaded before: device, inode, size, change
    and modification times of each (any rewrite, rename or touch changes one of them)."""
    marks: list[Any] = []
    for name in (META_FILE, *TRAIN_FILES, TEST_FILE):
        try:
            s = (folder / name).stat()
        except OSError:
            marks.append(None)
            continue
        marks.append((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns))
    return tuple(marks)


def fingerprint(data_dir: Path) -> str:
    """What the data of a folder is, whatever its path: a BLAKE2b digest of its files' bytes
    (the meta file, the training batches and the test batch, in that order; about 0.3 s for
    CIFAR-10's 180 MB). A trial resumes only from a checkpoint trained on the same digest, so
    a study moved to other data (or the same path holding other files) never mixes the two."""
    folder = find_folder(data_dir)
    digest = hashlib.blake2b(digest_size=16)
    for name in (META_FILE, *TRAIN_FILES, TEST_FILE):
        digest.update(name.encode() + b"\0")
        try:
            with (folder / name).open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError as e:
            raise UserError(f"cannot read {folder / name}: {e.strerror}") from None
        digest.update(b"\0")
    return digest.hexdigest()


def preload_cifar10(data_dir: Path) -> None:
    """Load and check a folder now, so that :func:`load_cifar10` in this process and in the
    processes forked from it serves it without reading the files again, for as long as they
    are the same files. Raises what :func:`load_cifar10` raises."""
    folder = find_folder(data_dir).resolve()
    identity = _identity(folder)
    _PRELOADED[folder] = (identity, _read_cifar10(folder))


def load_cifar10(data_dir: Path) -> tuple[Split, Split]:
    """Read and check a CIFAR-10 python-format folder: (train, test); a preloaded copy of the
    same files if there is one (see :func:`preload_cifar10`)."""
    folder = find_folder(data_dir)
    preloaded = _PRELOADED.get(folder.resolve())
    if preloaded is not None and preloaded[0] == _identity(folder.resolve()):
        return preloaded[1]
    return _read_cifar10(folder)


def _read_cifar10(folder: Path) -> tuple[Split, Split]:
    meta = _read_pickle(folder / META_FILE)
    if "label_names" not in meta:
        raise UserError(f"{folder / META_FILE} has no 'label_names' entry")
    parts = [_read_batch(folder / name) for name in TRAIN_FILES]
    train = Split(
        np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts])
    )
    test = _read_batch(folder / TEST_FILE)
    if len(train.labels) == 0 or len(test.labels) == 0:
        raise UserError(f"{folder} has an empty training or test split")
    return train, test


def download_cifar10(cache: Path) -> Path:
    """Download the official archive through torchvision (md5-checked) into ``cache``."""
    # here, not at the top: torchvision's import costs every trial process a second
    from torchvision.datasets import CIFAR10

    try:
        CIFAR10(root=str(cache), train=True, download=True)
    except Exception as e:  # no network, proxy, disk full: all end the same way for the user
        raise UserError(
            f"could not download CIFAR-10 into {cache} ({type(e).__name__}: {e}); download it "
            f"elsewhere and pass --data-dir pointing at the extracted {FOLDER}"
        ) from None
    return cache


def resolve_data_dir(data_dir: Path | None, download: bool, dry_run: bool = False) -> Path:
    """The folder to load: ``--data-dir``, else the cache (downloading into it on request;
    ``dry_run``: checked, but the folder it would download to is returned, nothing fetched)."""
    if data_dir is not None:
        return find_folder(data_dir)
    cache = default_cache()
    if (cache / FOLDER / TEST_FILE).exists():
        return cache / FOLDER
    if download:
        return cache / FOLDER if dry_run else find_folder(download_cifar10(cache))
    raise UserError(
        f"no CIFAR-10 found in {cache}; pass --data-dir pointing at an extracted "
        f"{FOLDER}, or --download to fetch it there"
    )


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` examples with class proportions kept (largest remainders), seeded."""
    if not 0 < n <= len(labels):
        raise UserError(f"--subset must be in 1..{len(labels)} (the training set's size), got {n}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * n / len(labels)
    take = np.floor(exact).astype(int)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: n - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def write_cifar10(folder: Path, train: Split, test: Split) -> Path:
    """Write ``train``/``test`` in CIFAR-10's python format under ``folder/cifar-10-batches-py``."""
    out = Path(folder) / FOLDER
    out.mkdir(parents=True, exist_ok=True)

    def dump(name: str, split: Split, label: str) -> None:
        batch = {
            "batch_label": label,
            "labels": [int(y) for y in split.labels],
            "data": np.ascontiguousarray(split.images.reshape(-1, IMAGE_BYTES), dtype=np.uint8),
            "filenames": [f"{label}_{i}.png" for i in range(len(split.labels))],
        }
        with (out / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)

    for i, idx in enumerate(np.array_split(np.arange(len(train.labels)), len(TRAIN_FILES))):
        dump(TRAIN_FILES[i], Split(train.images[idx], train.labels[idx]), f"training batch {i + 1}")
    dump(TEST_FILE, test, "testing batch")
    meta = {"label_names": list(CLASS_NAMES), "num_cases_per_batch": 10000, "num_vis": IMAGE_BYTES}
    with (out / META_FILE).open("wb") as f:
        pickle.dump(meta, f, protocol=2)
    return out


def make_synthetic(
    folder: Path, n_train: int = 1000, n_test: int = 200, seed: int = 0, noise: float = 40.0
) -> Path:
    """A learnable CIFAR-format data set: each class is a fixed random pattern plus pixel noise.

    Good for tests: a tiny BinaryNet separates the classes within an epoch or two.
    """
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, size=(NUM_CLASSES, 3, 32, 32)).astype(np.float32)

    def split(n: int) -> Split:
        labels = np.arange(n) % NUM_CLASSES
        rng.shuffle(labels)
        images = patterns[labels] + rng.normal(0, noise, size=(n, 3, 32, 32))
        return Split(np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.int64))

    return write_cifar10(folder, split(n_train), split(n_test))
