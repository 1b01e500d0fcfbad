"""File and folder digests (sha256), memoised per process by path, size and mtime.

One implementation for every identity that depends on files: model folders (the base
fingerprint, hence every image cache key), checkpoints, feature-extractor weights.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

_LOCK = threading.Lock()
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}
#: files larger than this are identified by size + first and last MiB in :func:`folder_digest`
#: (hashing tens of GB of SD weights in full would take minutes on every run).
LARGE_FILE_BYTES = 64 * 2**20
_SAMPLE_BYTES = 2**20


def sha256_file(path: str | Path) -> str:
    """sha256 of a whole file, memoised per (resolved path, size, mtime_ns)."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _FILE_DIGESTS:
            return _FILE_DIGESTS[key]
    h = hashlib.sha256()
    with p.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _LOCK:
        _FILE_DIGESTS[key] = digest
    return digest


def folder_digest(folder: str | Path) -> str:
    """Identity of a model folder: relative names and contents of its non-hidden files, in sorted
    order; a file over :data:`LARGE_FILE_BYTES` counts by its size, first and last MiB."""
    root = Path(folder)
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        h.update(str(f.relative_to(root)).encode())
        size = f.stat().st_size
        if size > LARGE_FILE_BYTES:
            with f.open("rb") as fh:
                h.update(str(size).encode())
                h.update(fh.read(_SAMPLE_BYTES))
                fh.seek(-_SAMPLE_BYTES, os.SEEK_END)
                h.update(fh.read())
        else:
            h.update(f.read_bytes())
    return h.hexdigest()
