"""pipelines/prepare_mayo.py: writes the manifest, prints the summary, never touches the data root."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from dicom_factory import make_ct_series
from pipeline_scripts import load_pipeline

from ldct_clip.cli import EXIT_USER_ERROR, run_cli
from ldct_clip.data.mayo import Manifest


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_pipeline("prepare_mayo")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("mayo")
    for seed, patient in enumerate(("L067", "L506")):
        make_ct_series(data / patient / "full_1mm", 3, 16, 16, spacing=(1.0, 0.7, 0.7), seed=2 * seed)
        make_ct_series(data / patient / "quarter_1mm", 2, 16, 16, spacing=(1.0, 0.7, 0.7), seed=2 * seed + 1)
    return data


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_writes_manifest_and_summary(script: ModuleType, root: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(root)
    output = tmp_path / "manifest.csv"
    assert run_cli(script.main, [str(root), "--output", str(output), "--workers", "2"]) == 0
    assert _snapshot(root) == before
    manifest = Manifest.load(output)
    assert manifest.root == root.resolve() and manifest.patients == ("L067", "L506")
    assert len(manifest) == 10 and len(manifest.pairs()) == 4
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["patient", "thickness", "kernel"]
    # patient, thickness, kernel, full, quarter, pairs, quarter w/o full, full w/o quarter
    assert lines[1].split() == ["L067", "1", "mm", "-", "3", "2", "2", "0", "1"]
    assert lines[2].split() == ["L506", "1", "mm", "-", "3", "2", "2", "0", "1"]
    assert lines[3] == "10 slices of 2 patients; 0 files skipped"
    assert lines[4] == f"manifest written to {output}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--output", "{out}"], "not a folder"),
        (["{root}", "--output", "{root}/manifest.csv"], "inside the data root"),
        (["{root}", "--output", "{out}", "--workers", "0"], "workers=0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(script: ModuleType, root: Path, tmp_path: Path, args: list[str],
                                          message: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(root)
    values = {"root": root, "out": tmp_path / "m.csv", "missing": tmp_path / "missing"}
    assert run_cli(script.main, [arg.format(**values) for arg in args]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert _snapshot(root) == before and not (tmp_path / "m.csv").exists()
