"""Fixtures for the I/O tests: small synthetic CT series and pydicom's real 512×512 CT slice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dicom_factory import make_ct_series  # importable because tests/conftest.py puts tests/ on sys.path
from pydicom.data import get_testdata_file


@pytest.fixture
def series_dir(tmp_path: Path) -> Path:
    """Folder holding a default 6-slice 64×64 CT series (shuffled names, mixed extensions)."""
    folder = tmp_path / "series"
    make_ct_series(folder)
    return folder


@pytest.fixture(scope="session")
def real_uncompressed() -> Path:
    """pydicom-data's CT slice 693_UNCR.dcm: 512×512, signed, slope 1, intercept −1024, padding −2000."""
    return Path(get_testdata_file("693_UNCR.dcm"))


@pytest.fixture(scope="session")
def real_j2k() -> Path:
    """The same slice as :func:`real_uncompressed`, JPEG 2000 lossless."""
    return Path(get_testdata_file("693_J2KR.dcm"))


@pytest.fixture
def real_series_dir(tmp_path: Path, real_uncompressed: Path) -> Path:
    """Folder holding a copy of the real CT slice as a one-slice series."""
    folder = tmp_path / "real"
    folder.mkdir()
    shutil.copy(real_uncompressed, folder / "IM0001")
    return folder
