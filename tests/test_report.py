"""ldct_clip.evaluation.report: a complete, self-consistent report folder, written atomically."""

from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ldct_clip import CLIPDenoiser
from ldct_clip.errors import InputError
from ldct_clip.evaluation import (
    REPORT_FILES,
    EvaluationResult,
    PairedSlices,
    SlicePair,
    check_output,
    evaluate,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pairs(comparable: bool) -> PairedSlices:
    """Two patients of two 48x48 slices: a water disc with a bone insert, low-dose = full + 40 HU noise."""
    from dicom_factory import phantom_hu

    full = phantom_hu(4, 48, 48)
    low = full + np.random.default_rng(0).normal(0.0, 40.0, full.shape).astype(np.float32)
    slices = tuple(SlicePair("L333" if i < 2 else "L506", 100.0 + i % 2, f"q{i}.dcm", f"f{i}.dcm", (48, 48))
                   for i in range(4))
    return PairedSlices(slices, lambda i: (low[i], full[i]), "synthetic phantom pairs", "noise2sim",
                        published_comparable=comparable)


@pytest.fixture(scope="module")
def result() -> EvaluationResult:
    model = CLIPDenoiser(encoder_weights="random")
    return evaluate(model, _pairs(comparable=False), presets=["clipdenoising", "redcnn"], baselines=["tv"],
                    device="cpu", figure_slices=2)


def _section(markdown: str, preset: str) -> str:
    """The part of report.md from a preset's heading to the next preset or HU section."""
    start = markdown.index(f"## PSNR / SSIM, preset {preset}")
    ends = [i for i in (markdown.find("## PSNR / SSIM", start + 3), markdown.find("## HU fidelity")) if i > start]
    return markdown[start : min(ends)]


def test_a_complete_report_folder(result: EvaluationResult, tmp_path: Path) -> None:
    folder = write_report(result, tmp_path / "report", command="python -m ldct_clip.evaluate --x")
    assert sorted(p.name for p in folder.iterdir()) == sorted([*REPORT_FILES, "figures"])
    figures = sorted(p.name for p in (folder / "figures").iterdir())
    assert figures == ["psnr_clipdenoising.png", "psnr_redcnn.png", "slice_0001.png", "slice_0003.png"]
    for name in figures:
        png = (folder / "figures" / name).read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000

    markdown = (folder / "report.md").read_text()
    assert "Warning:" in markdown and "randomly initialised" in markdown
    for preset, window, data_range in (("clipdenoising", "[-1024, 3072]", "4096"), ("redcnn", "[-160, 240]", "400")):
        headers = [line for line in _section(markdown, preset).splitlines() if line.startswith(f"Preset {preset}:")]
        assert len(headers) == 2  # overall and per-patient tables
        assert all(f"window {window} HU" in h and f"data_range {data_range}" in h and "4 slices" in h for h in headers)
    overall = result.summary("redcnn", "tv")
    assert f"| TV (Chambolle) | {overall.psnr_mean:.2f} ± {overall.psnr_std:.2f} |" in markdown
    assert "| L506 | 2 | Low-dose input |" in markdown
    hu = markdown[markdown.index("## HU fidelity") :]
    assert "No metric preset" in hu and "| Full-dose reference |" in hu and "2 ROI(s) on 2 of 4 slices" in hu
    assert "![slice_0001.png](figures/slice_0001.png)" in markdown

    page = (folder / "report.html").read_text()
    assert not re.search(r'(src|href)="(?!data:)', page)  # self-contained
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 4 and all(base64.b64decode(data).startswith(PNG_MAGIC) for data in images)
    assert 'class="warning"' in page and "data_range 4096" in page


def test_published_rows_only_under_their_preset(result: EvaluationResult, tmp_path: Path) -> None:
    markdown = (write_report(result, tmp_path / "r") / "report.md").read_text()
    clip, red = _section(markdown, "clipdenoising"), _section(markdown, "redcnn")
    for row in ("| TV † | 44.81 | 0.972 |", "| ScoreSDE † | 45.36 | 0.972 |", "| Noise2Sim † | 45.98 | 0.978 |",
                "| CLIPDenoising † | 45.88 | 0.976 |"):
        assert row in clip and row not in red
    assert "Quoted from CLIPDenoising" in clip and "not directly comparable" in clip  # other slices than L506
    assert "†" not in red
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [r["method"] for r in summary["presets"]["clipdenoising"]["published"]] == [
        "TV", "ScoreSDE", "Noise2Sim", "CLIPDenoising"]
    assert summary["presets"]["redcnn"]["published"] == []


def test_metrics_csv_and_summary_match_the_result(result: EvaluationResult, tmp_path: Path) -> None:
    folder = write_report(result, tmp_path / "r")
    with (folder / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * 3  # slices x methods
    assert {r["method"] for r in rows} == {"model", "low_dose", "tv"}
    for row in rows:
        index, key = int(row["index"]), row["method"]
        for preset in ("clipdenoising", "redcnn"):
            for metric in ("psnr", "ssim"):
                assert float(row[f"{metric}_{preset}"]) == result.scores[preset][key][metric][index]
        assert row["patient"] == result.slices[index].patient and row["full_source"] == f"f{index}.dcm"

    summary = json.loads((folder / "summary.json").read_text())
    clip = summary["presets"]["clipdenoising"]
    assert clip["window"] == [-1024.0, 3072.0] and clip["data_range"] == 4096.0 and clip["slices"] == 4
    model = clip["methods"]["model"]
    assert model["psnr_mean"] == pytest.approx(result.scores["clipdenoising"]["model"]["psnr"].mean())
    assert model["per_patient"]["L506"]["n"] == 2
    assert summary["model"]["encoder_is_random"] is True and summary["slices"] == 4
    assert len(summary["hu_fidelity"]["rois"]) == len(result.rois)
    assert summary["hu_fidelity"]["methods"]["low_dose"]["n_rois"] == 2


def test_existing_reports_are_refused_or_replaced_atomically(result: EvaluationResult, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report"
    write_report(result, target)
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        write_report(result, target)
    (target / "old.txt").write_text("x")
    write_report(result, target, overwrite=True)
    assert not (target / "old.txt").exists() and (target / "report.html").is_file()

    def broken(_: EvaluationResult) -> dict[str, bytes]:
        raise RuntimeError("disk full")

    monkeypatch.setattr("ldct_clip.evaluation.report._render_figures", broken)
    (target / "old.txt").write_text("x")
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(result, target, overwrite=True)
    assert (target / "old.txt").is_file()  # the previous report is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # and no temporary folder is left
    with pytest.raises(RuntimeError):
        write_report(result, tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_output_inside_the_data_or_on_a_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(InputError, match="outside the data folder"):
        check_output(data / "report", inputs=[data])
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        check_output(tmp_path / "file", overwrite=True)
    assert check_output(tmp_path / "report", inputs=[data]) == tmp_path / "report"


def test_comparable_slices_drop_the_caveat(tmp_path: Path) -> None:
    model = CLIPDenoiser(encoder_weights="random")
    result = evaluate(model, _pairs(comparable=True).evenly_spaced(4), baselines=(), rois=[], device="cpu",
                      figure_slices=0)
    markdown = (write_report(result, tmp_path / "r") / "report.md").read_text()
    assert "Quoted from CLIPDenoising" in markdown and "not directly comparable" not in markdown
    assert "No ROIs were measured." in markdown
