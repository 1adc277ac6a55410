"""Files the workbench writes: one atomic writer, and the check on every output path a user names.

Atomic: the bytes go to a hidden temp file beside the target, are flushed to disk, then
renamed over it (`os.replace`), so a kill at any moment leaves the old file or the new one,
never half a file, and a failed write leaves no temp file behind.

Output paths (`--save`, `--out`, `--run-dir`): a path given by a user names one *file* of the
expected kind. A folder, a file of another kind (`--save ~/.bashrc`) or a non-empty folder that
is not a run is refused with one sentence before any work starts, so a typo never costs a
finished training nor overwrites something that was not ours.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import WorkbenchError


@contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the file at `path` (made, with its folder, if missing) for the
    block: one process on this machine at a time (a launch, a shared job's record, a study's ask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a temp file beside `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


_hashes: dict[tuple, str] = {}


def content_hash(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, remembered per path, size and mtime: the cache key of
    whatever is computed from a checkpoint (a retrained or replaced file is a new key)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _hashes:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _hashes[key] = h.hexdigest()
    return _hashes[key]


def write_bytes_atomic(path: str | Path, data: bytes | str) -> Path:
    raw = data.encode() if isinstance(data, str) else data
    return write_atomic(path, lambda tmp: tmp.write_bytes(raw))


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    # serialise first: an object json cannot write fails before any file is touched
    return write_bytes_atomic(path, json.dumps(obj, indent=indent))


def copy_atomic(src: str | Path, dst: str | Path) -> Path:
    return write_atomic(dst, lambda tmp: shutil.copyfile(src, tmp))


def read_json(path: str | Path, default: Any = None) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def check_output_file(path: str | Path, suffix: str, flag: str) -> Path:
    """`path` as a file to (over)write with `suffix`, or a one-line refusal naming `flag`."""
    p = Path(path)
    if p.suffix.lower() != suffix:
        raise WorkbenchError(f"{flag} {path}: the file name must end in {suffix}")
    if p.is_dir():
        raise WorkbenchError(f"{flag} {path}: that is a folder; give a file name ending in {suffix}")
    if p.exists() and not p.is_file():
        raise WorkbenchError(f"{flag} {path}: exists and is not a regular file")
    return p


def check_new_folder(path: str | Path, flag: str) -> Path:
    """A folder to create or an empty one: never a folder that already holds something."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise WorkbenchError(f"{flag} {path}: exists and is not a folder")
    if p.is_dir() and any(p.iterdir()):
        raise WorkbenchError(f"{flag} {path}: the folder is not empty and is not a run "
                             "(it has no config.json); give a new folder")
    return p
