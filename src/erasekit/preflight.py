"""Checks that need this machine but no model: devices, output folders, the model and every
asset available offline. ``validate`` runs them (``--portable`` / ``--no-assets`` skip them) and
``run`` always runs them before loading anything, so nothing ``validate`` accepted fails later
for one of these reasons.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from erasekit.errors import ConfigError

if TYPE_CHECKING:
    from erasekit.config import ResolvedRun


_VIRTUAL_ROOTS = ("/proc", "/sys", "/dev")


def check_output_folder(path: Path, field: str, *, writable: bool = True) -> None:
    """``path`` can be (or already is) a folder this process can write: no NUL byte, no name over
    255 bytes, not a file, not under a file, not in a virtual filesystem, not on a read-only mount."""
    text = str(path)
    if "\x00" in text:
        raise ConfigError(field, "the path contains a NUL byte", "give a plain folder path")
    if len(os.fsencode(text)) > 4000 or any(len(os.fsencode(part)) > 255 for part in Path(text).parts):
        raise ConfigError(field, "a folder name is longer than 255 bytes (or the path longer than 4000)", "use a shorter path")
    p = Path(os.path.abspath(text))
    if any(str(p) == root or str(p).startswith(root + "/") for root in _VIRTUAL_ROOTS):
        raise ConfigError(field, f"{text} is in a virtual filesystem ({p.parts[1]})", "write results to a normal folder")
    if p.exists() and not p.is_dir():
        raise ConfigError(field, f"{text} exists and is not a folder", "give a folder path (or remove the file)")
    ancestor = p
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(field, f"{text} is under {ancestor}, which is a file", "give a folder path")
    if writable and not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(field, f"{ancestor} is not writable (read-only mount or permissions)", "choose a folder you can write")


def check_machine(run: ResolvedRun, *, portable: bool = False, assets: bool = True) -> None:
    """Checks that depend on this machine but need no model: the devices exist, the output and
    cache folders can be written, the base model and (``assets``) every model, dataset and weights
    file the metrics read are available offline. ``validate`` runs them (``--portable`` skips all of
    them, ``--no-assets`` the last) and ``run`` always does, so nothing ``validate`` accepted fails
    later for one of these reasons."""
    check_output_folder(run.output_dir, "output_dir", writable=not portable)
    check_output_folder(run.cache_dir, "cache_dir", writable=not portable)
    if portable:
        return
    from erasekit.errors import ModelNotFoundError
    from erasekit.models.loading import local_model_dir, resolve_device


    devices = [("technique.config.device", run.technique_config.device)]
    devices += [(f"{m.path}.config.device", m.config.device) for m in run.metrics]
    for field_path, device in devices:
        try:
            resolve_device(device)
        except ConfigError as err:
            raise ConfigError(field_path, err.problem, err.fix) from None
    try:
        local_model_dir(run.technique_config.model_id)  # a folder, or a snapshot in the HF cache: no weights read
    except ModelNotFoundError as err:
        raise ConfigError("technique.config.model_id", str(err).split(". ")[0], "give a local diffusers folder, an HF id in the local "
                          "HF cache (huggingface-cli download on a machine with network), or toy") from None
    check_families(run)
    if assets:
        for m in run.metrics:
            m.cls.check_assets(m.config, run, f"{m.path}.config")


def check_families(run: ResolvedRun) -> None:
    """The model's family (from its configs) is one erasekit runs, and the technique and every
    metric support it: ConfigError naming the field otherwise."""
    from erasekit.models.families import require_family
    from erasekit.models.loading import model_family

    family = model_family(run.technique_config.model_id).family
    require_family(family, run.technique_cls.families, f"technique {run.technique_name}", "technique.config.model_id")
    for m in run.metrics:
        m.cls.check_family(m.config, family, f"{m.path}.config")
