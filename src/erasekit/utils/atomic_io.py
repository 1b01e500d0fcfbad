"""Atomic file writes and JSON I/O: a crash or kill -9 never leaves a half-written report, image or checkpoint."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

#: temp files are ``.{name}.{host}.{pid}.{random}.tmp`` in the target's folder, so a sweeper
#: can tell a dead writer's leftovers (this host, pid gone) from a live writer's.
TMP_SUFFIX = ".tmp"
HOST = socket.gethostname().replace(".", "_")


def tmp_name_owner(name: str) -> tuple[str, int] | None:
    """(host, pid) of the writer of a temp file named by :func:`atomic_write`, else None."""
    if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
        return None
    parts = name[: -len(TMP_SUFFIX)].split(".")
    try:
        return parts[-3], int(parts[-2])
    except (IndexError, ValueError):
        return None


def sweep_stale_tmp(folders: Iterable[Path], max_age_s: float = 3600.0) -> int:
    """Delete the temp files killed writers left in ``folders``; returns how many.

    A temp file is stale when its writer (pid in the name, this host) is gone, or when it is
    older than ``max_age_s`` (writers on other hosts of a shared disk). Live writers' files
    are left alone.
    """
    removed = 0
    now = time.time()
    for folder in folders:
        try:
            entries = list(Path(folder).iterdir())
        except OSError:
            continue
        for f in entries:
            if not (f.name.startswith(".") and f.name.endswith(TMP_SUFFIX)):
                continue
            owner = tmp_name_owner(f.name)
            stale = owner is None or (owner[0] == HOST and not _pid_alive(owner[1]))
            if not stale:
                try:
                    stale = now - f.stat().st_mtime > max_age_s
                except FileNotFoundError:
                    continue
            if stale:
                f.unlink(missing_ok=True)
                removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_in_place(path: Path, data: bytes) -> None:
    """Overwrite an existing file without a temp file (the last resort when the disk is full:
    rewriting a file no larger than before needs no new blocks). Not atomic."""
    with open(path, "r+b") as fh:
        fh.seek(0)
        fh.write(data)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` fill a temp file in ``path``'s folder, fsync it, then rename it over
    ``path``: readers see the old file, no file, or all of the new one -- never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and paths so json.dumps never fails on a result."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None  # type: ignore[assignment]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if np is not None and isinstance(obj, np.generic):
        return obj.item()
    if np is not None and isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return str(obj)  # NaN/inf are not JSON
    return obj


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    lines = [json.dumps(to_jsonable(r), sort_keys=True) for r in rows]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
