"""The simulation cache: simulated thin-slice low-dose series kept in the benchmark folder, keyed by what made them.

Simulation is the slow part of the benchmark (projections of every slice at every dose and filter), and it
does not depend on the checkpoints, so a rerun into the same folder (``--overwrite``, another set of models)
reuses it. An entry is ``cache/<key>.npy`` (float32 Z×Y×X HU of the simulated thin slices) with
``cache/<key>.json`` (the parameters, for people, and the seconds the simulation took, so the report states
the cost even on a cache hit). The key (:func:`cache_key`) hashes everything the simulated slices depend on:
the source files (path, size, modification time), the selected slices, the patient, dose, filter, seed,
concrete projector, geometry, photons, electronic noise and views. Thickness is not part of it: thick slabs
are averaged from the cached thin slices (:mod:`ldct_clip.generalization.conditions`).

The benchmark writes its folder under a temporary name and renames it into place, so the cache of the new
folder is filled from the old folder's (:meth:`SimulationCache.get` links or copies a hit across) and from
new simulations; an interrupted run leaves the old folder, and its cache, as they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ldct_clip.atomic import partial_path

__all__ = ["CACHE_DIR", "CACHE_VERSION", "CachedSimulation", "SimulationCache", "cache_key"]

CACHE_DIR = "cache"
"""Folder of the cache inside the benchmark folder."""
CACHE_VERSION = 1
"""Part of every key: bump it when the simulation changes what it computes from the same parameters."""


def cache_key(parameters: dict[str, object]) -> str:
    """A 24-hex-digit SHA-256 of ``parameters`` (JSON, sorted keys): the same parameters, the same key.

    >>> cache_key({"dose": 0.25, "seed": 0}) == cache_key({"seed": 0, "dose": 0.25})
    True
    """
    text = json.dumps({"cache_version": CACHE_VERSION, **parameters}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class CachedSimulation:
    """A simulated series, the seconds its simulation took, and whether it came from the cache."""

    hu: np.ndarray
    seconds: float
    hit: bool


class SimulationCache:
    """Entries written into ``folder`` (the staged benchmark folder's cache), looked up there and in
    ``previous`` (the cache of the folder being replaced), whose hits are linked or copied into ``folder``."""

    def __init__(self, folder: Path, previous: Path | None = None) -> None:
        self.folder = folder
        self.previous = previous if previous is not None and previous.is_dir() else None
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str, shape: tuple[int, ...]) -> CachedSimulation | None:
        """The entry ``key`` when present with this ``shape`` (anything unreadable counts as absent)."""
        for where in (self.folder, self.previous):
            if where is None:
                continue
            array, record = where / f"{key}.npy", where / f"{key}.json"
            try:
                hu = np.load(array, allow_pickle=False, mmap_mode="r")
                seconds = float(json.loads(record.read_text(encoding="utf-8"))["seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if hu.shape != shape or hu.dtype != np.float32:
                continue
            if where != self.folder:
                for file in (array, record):
                    _link_or_copy(file, self.folder / file.name)
            return CachedSimulation(np.array(hu), seconds, hit=True)
        return None

    def put(self, key: str, hu: np.ndarray, seconds: float, parameters: dict[str, object]) -> CachedSimulation:
        """Store a new simulation (each file written under a temporary name, then renamed)."""
        values = np.ascontiguousarray(hu, dtype=np.float32)
        array = partial_path(self.folder / f"{key}.npy", ".npy")
        np.save(array, values, allow_pickle=False)
        os.replace(array, self.folder / f"{key}.npy")
        record = partial_path(self.folder / f"{key}.json")
        record.write_text(json.dumps({"seconds": seconds, "parameters": parameters}, indent=2, default=str) + "\n",
                          encoding="utf-8")
        os.replace(record, self.folder / f"{key}.json")
        return CachedSimulation(values, seconds, hit=False)


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` as ``target`` (no copy on one file system), else copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
