"""Import a script of ``pipelines/`` as a module, so tests call its ``main`` in-process."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def load_pipeline(name: str) -> ModuleType:
    """The module ``pipelines/<name>.py`` (the scripts are not a package: they are run by path)."""
    spec = importlib.util.spec_from_file_location(name, PIPELINES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
