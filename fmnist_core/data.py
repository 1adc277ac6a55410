"""The real Fashion-MNIST: find it, parse the IDX files, verify them, cache them.

Where the data comes from, in order:
  1. $FMNIST_DATA_DIR
  2. /usr/share/datasets/fashion-mnist/  (Debian package `dataset-fashion-mnist`)
  3. artifacts/data/FashionMNIST/raw/     (torchvision download, when online)
Files may be gzipped (`*.gz`) or plain IDX. Every file is checked (magic number,
shape, label range, exact length) and a bad one is named with what is wrong.

The parsed uint8 arrays are cached as .npy under artifacts/data/cache/ (keyed by
the source files' size and mtime), so a reload costs milliseconds instead of the
~0.4 s of gunzip + parse; inside one process they are held once.

Deliberately left out: any synthetic stand-in. Without the real files we fail.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

CLASSES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
NUM_CLASSES = len(CLASSES)
IMAGE_SIZE = 28

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("FMNIST_ARTIFACTS", PROJECT_ROOT / "artifacts"))
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_ROOT = ARTIFACTS / "data"

# split name -> (images file, labels file, expected count)
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


@dataclass(frozen=True)
class FashionMNIST:
    """The whole dataset as uint8 arrays; treat as read-only (shared by every user)."""
    x_train: np.ndarray  # (60000, 28, 28) uint8, garment bright on black
    y_train: np.ndarray  # (60000,) uint8 in 0..9
    x_test: np.ndarray   # (10000, 28, 28) uint8
    y_test: np.ndarray   # (10000,) uint8
    source: str          # folder the files were read from


def candidate_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("FMNIST_DATA_DIR"):
        dirs.append(Path(os.environ["FMNIST_DATA_DIR"]))
    dirs += [DEBIAN_DIR, DOWNLOAD_ROOT / "FashionMNIST" / "raw"]
    return dirs


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _complete(folder: Path) -> bool:
    return all(_find_file(folder, f) for imgs, labs, _ in SPLITS.values() for f in (imgs, labs))


def find_data_dir(download: bool = True) -> Path:
    """The first folder holding all four files; else try a torchvision download."""
    for folder in candidate_dirs():
        if folder.is_dir() and _complete(folder):
            return folder
    tried = ", ".join(str(d) for d in candidate_dirs())
    if download:
        try:
            from torchvision.datasets import FashionMNIST as TVFashion
            for train in (True, False):
                TVFashion(str(DOWNLOAD_ROOT), train=train, download=True)
        except Exception as exc:  # offline, no torchvision...: say what to do
            raise DataError(
                f"Fashion-MNIST not found (looked in {tried}) and the download failed ({exc}). "
                "On Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist`, or set "
                "FMNIST_DATA_DIR to a folder with the four IDX files.") from None
        folder = DOWNLOAD_ROOT / "FashionMNIST" / "raw"
        if _complete(folder):
            return folder
    raise DataError(f"Fashion-MNIST not found (looked in {tried}). On Debian/Ubuntu: "
                    "`sudo apt-get install dataset-fashion-mnist`, or set FMNIST_DATA_DIR.")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot be read as {'gzip' if path.suffix == '.gz' else 'IDX'} "
                        f"({exc}); the file is corrupt or truncated — reinstall or re-download it") from None


def parse_idx(path: Path, magic: int, count: int) -> np.ndarray:
    """Parse one IDX file and check it is exactly what Fashion-MNIST should be."""
    raw = _read_bytes(Path(path))
    ndim = 3 if magic == IMAGES_MAGIC else 1
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: only {len(raw)} bytes, shorter than an IDX header ({header_len})")
    got_magic = struct.unpack(">I", raw[:4])[0]
    if got_magic != magic:
        kind = "images" if magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{path}: magic number {got_magic} where IDX {kind} have {magic}; "
                        "not a Fashion-MNIST file")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header_len])
    expected = (count, IMAGE_SIZE, IMAGE_SIZE) if ndim == 3 else (count,)
    if tuple(dims) != expected:
        raise DataError(f"{path}: header says shape {tuple(dims)}, expected {expected}")
    body = len(raw) - header_len
    need = int(np.prod(expected))
    if body != need:
        what = "truncated" if body < need else "has trailing bytes"
        raise DataError(f"{path}: {what}: {body} data bytes, expected {need}")
    arr = np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(expected)
    if ndim == 1 and arr.max() >= 10:
        raise DataError(f"{path}: label {int(arr.max())} out of range 0..9")
    return arr


def _cache_key(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _load_from(folder: Path, cache_dir: Path | None) -> FashionMNIST:
    files = {}
    for split, (imgs, labs, _) in SPLITS.items():
        files[f"x_{split}"] = _find_file(folder, imgs)
        files[f"y_{split}"] = _find_file(folder, labs)
    arrays = None
    if cache_dir is not None:
        key = _cache_key(list(files.values()))
        cdir = cache_dir / key
        if (cdir / "ok.json").is_file():
            try:
                arrays = {k: np.load(cdir / f"{k}.npy") for k in files}
            except (OSError, ValueError):
                arrays = None  # damaged cache: re-parse below
    if arrays is None:
        arrays = {}
        for split, (_, _, count) in SPLITS.items():
            arrays[f"x_{split}"] = parse_idx(files[f"x_{split}"], IMAGES_MAGIC, count)
            arrays[f"y_{split}"] = parse_idx(files[f"y_{split}"], LABELS_MAGIC, count)
        if cache_dir is not None:
            _write_cache(cdir, arrays)
    for a in arrays.values():
        a.setflags(write=False)  # shared by every session: never mutate
    return FashionMNIST(source=str(folder), **arrays)


def _write_cache(cdir: Path, arrays: dict[str, np.ndarray]) -> None:
    try:
        cdir.mkdir(parents=True, exist_ok=True)
        for k, a in arrays.items():
            tmp = cdir / f".{k}.{os.getpid()}.npy"
            np.save(tmp, a)
            os.replace(tmp, cdir / f"{k}.npy")
        (cdir / "ok.json").write_text(json.dumps({"shapes": {k: list(a.shape) for k, a in arrays.items()}}))
    except OSError:
        pass  # a read-only checkout still works, just without the fast path


@functools.lru_cache(maxsize=4)
def load(folder: str | None = None, cache: bool = True) -> FashionMNIST:
    """The dataset, held once per process. `folder` overrides the search."""
    path = Path(folder) if folder else find_data_dir()
    if not _complete(path):
        raise DataError(f"{path}: does not hold the four Fashion-MNIST IDX files")
    return _load_from(path, DOWNLOAD_ROOT / "cache" if cache else None)


def class_counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=NUM_CLASSES).tolist()


def train_val_split(n: int, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded shuffle split of range(n) into (train_idx, val_idx); 80/20 by default."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def summary(ds: FashionMNIST) -> dict:
    return {
        "train": int(len(ds.y_train)), "test": int(len(ds.y_test)), "source": ds.source,
        "train_class_counts": class_counts(ds.y_train), "test_class_counts": class_counts(ds.y_test),
    }
