"""The benchmark's overview: one table of every condition and method, PSNR-against-dose figures, the costs.

Written into the (staged) benchmark folder by :func:`write_overview`: ``report.md``, a self-contained
``report.html`` (figures embedded), ``summary.json``, ``table.csv`` (one row per condition, preset and
method) and ``figures/psnr_vs_dose_<preset>.png`` (one line per method, one panel per kernel and thickness,
the real quarter dose as a star). Each condition's own evaluation report (slice figures, interactive viewer,
per-slice metrics) is linked from the table. Markdown and HTML come from one list of blocks
(:mod:`ldct_clip.document`), so they agree.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ldct_clip.document import DPI, FIGURE_FOLDER, Block, Link, finite_json, png_bytes, to_html, to_markdown
from ldct_clip.generalization.run import GeneralizationResult
from ldct_clip.models.encoder import RANDOM

__all__ = ["SUMMARY_NAME", "TABLE_NAME", "psnr_figure", "table_rows", "write_overview"]

TABLE_NAME = "table.csv"
SUMMARY_NAME = "summary.json"
_STYLE = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
          "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
          "th{background:#eee}img{max-width:100%}")
"""CSS of the overview: smaller tables than an evaluation report's, for its ten columns."""


def _paired(summary: dict[str, Any], preset: str, method: str, metric: str, reference: str) -> dict[str, Any] | None:
    for row in summary["presets"][preset]["paired"]:
        if (row["method"], row["reference"], row["metric"]) == (method, reference, metric):
            return row
    return None


def table_rows(result: GeneralizationResult) -> list[dict[str, Any]]:
    """One row per condition, preset and method: means, paired differences against the first model with
    their confidence intervals, HU bias and noise SD in flat regions, and the costs."""
    rows = []
    for item in result.conditions:
        c, summary = item.condition, item.summary
        reference = summary["methods"][0]["key"]
        for preset in summary["presets"]:
            for method in summary["methods"]:
                key = method["key"]
                scores = summary["presets"][preset]["methods"][key]
                hu = summary["hu_fidelity"]["methods"].get(key) or {}
                row: dict[str, Any] = {
                    "condition": c.key, "condition_label": c.label, "real": c.real, "dose": c.dose,
                    "kernel": c.kernel, "thickness_mm": c.thickness_mm, "slab_slices": item.slab_slices,
                    "preset": preset, "method": key, "label": method["label"], "kind": method["kind"],
                    "slices": scores["n"], "psnr_mean": scores["psnr_mean"], "psnr_std": scores["psnr_std"],
                    "ssim_mean": scores["ssim_mean"], "ssim_std": scores["ssim_std"],
                }
                for metric in ("psnr", "ssim"):
                    d = _paired(summary, preset, key, metric, reference) or {}
                    row |= {f"{metric}_diff_vs_first": d.get("mean_difference"), f"{metric}_ci_low": d.get("ci_low"),
                            f"{metric}_ci_high": d.get("ci_high"), f"{metric}_p_value": d.get("p_value")}
                row |= {"bias_hu": hu.get("bias_hu"), "abs_bias_hu": hu.get("abs_bias_hu"),
                        "noise_sd_hu": hu.get("noise_sd_hu"), "full_dose_noise_sd_hu": hu.get("full_dose_noise_sd_hu"),
                        "worse_than_input": " ".join(scores["worse_than_input"]),
                        "seconds_per_slice": summary["seconds_per_slice"].get(key),
                        "simulation_seconds_per_thin_slice": item.simulation_seconds,
                        "simulation_from_cache": item.cache_hits > 0, "report": f"{item.report}/report.html"}
                rows.append(row)
    return rows


def psnr_figure(result: GeneralizationResult, preset: str) -> Figure:
    """PSNR against dose: one panel per kernel (columns) and thickness (rows), one line per method, the real
    quarter dose of a thickness as a star in each of its panels."""
    conditions = [item.condition for item in result.conditions]
    kernels = list(dict.fromkeys(c.kernel for c in conditions if not c.real))
    thicknesses = list(dict.fromkeys(c.thickness_mm for c in conditions))
    methods = result.conditions[0].summary["methods"]
    fig = Figure(figsize=(3.8 * len(kernels), 3.0 * len(thicknesses) + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(len(thicknesses), len(kernels), squeeze=False, sharey=True)
    doses = sorted({c.dose for c in conditions}, reverse=True)

    def psnr(item: Any, key: str) -> float:
        value = item.summary["presets"][preset]["methods"][key]["psnr_mean"]
        return math.nan if value is None else value

    for row, thickness in enumerate(thicknesses):
        real = [item for item in result.conditions if item.condition.real and item.condition.thickness_mm == thickness]
        for column, kernel in enumerate(kernels):
            ax = axes[row][column]
            chosen = sorted((item for item in result.conditions if not item.condition.real
                             and item.condition.kernel == kernel and item.condition.thickness_mm == thickness),
                            key=lambda item: -item.condition.dose)
            for number, method in enumerate(methods):
                colour = f"C{number % 10}"
                style = "--" if method["kind"] == "input" else ":" if method["kind"] == "baseline" else "-"
                ax.plot([item.condition.dose * 100 for item in chosen], [psnr(item, method["key"]) for item in chosen],
                        style, marker="o", markersize=4, color=colour, label=method["label"])
                for item in real:
                    ax.plot([item.condition.dose * 100], [psnr(item, method["key"])], "*", markersize=11,
                            color=colour, markeredgecolor="black", markeredgewidth=0.5)
            ax.set_xscale("log")
            ax.set_xticks([d * 100 for d in doses], [f"{d * 100:g}" for d in doses])
            ax.minorticks_off()
            ax.invert_xaxis()
            ax.grid(alpha=0.3)
            ax.set_title(f"{kernel} kernel, {thickness:g} mm", fontsize=9)
            if row == len(thicknesses) - 1:
                ax.set_xlabel("dose (% of normal)")
            if column == 0:
                ax.set_ylabel(f"PSNR (dB), preset {preset}")
    handles, names = axes[0][0].get_legend_handles_labels()
    if any(item.condition.real for item in result.conditions):
        handles.append(Line2D([], [], marker="*", linestyle="", color="grey", markeredgecolor="black", markersize=11))
        names.append("real quarter dose (scanner kernel)")
    columns = max(1, min(len(names), int(16 * 3.8 * len(kernels) // (max(map(len, names)) + 6))))
    fig.legend(handles, names, loc="outside lower center", ncol=columns, fontsize=8, frameon=False)
    return fig


# --- document blocks --------------------------------------------------------------------------------------


def _number(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _difference(row: dict[str, Any], metric: str, digits: int) -> str:
    mean, low, high = row[f"{metric}_diff_vs_first"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"]
    if mean is None:
        return "reference"
    interval = "" if low is None else f" [{low:+.{digits}f}, {high:+.{digits}f}]"
    return f"{mean:+.{digits}f}{interval}"


def _blocks(result: GeneralizationResult, rows: list[dict[str, Any]], figures: list[str]) -> list[Block]:
    s = result.settings
    first = result.conditions[0].summary["methods"][0]["label"]
    patients = ", ".join(f"{p['patient']} ({p['slices']} of {p['of']} slices, {p['slice_spacing_mm']:g} mm apart)"
                         for p in s["patients"])
    blocks = [
        Block("heading", "Generalization benchmark: dose, kernel and thickness", level=1),
        Block("paragraph", f"Normal dose: {s['source']}; patient(s) {patients}. {len(result.conditions)} "
                           f"conditions: doses {', '.join(f'{d * 100:g}%' for d in s['doses'])}, noise kernels "
                           f"{', '.join(s['filters'])}, thickness "
                           f"{', '.join(f'{t:g} mm' for t in s['thicknesses_mm'])}"
                           + (", and the real quarter dose" if any(c.condition.real for c in result.conditions)
                              else "")
                           + f". Every row is scored against the normal dose of the same slices; differences are "
                             f"paired, against {first}, with 95 % bootstrap intervals. See docs/generalization.md "
                             "for how to read it."),
    ]
    random = [m["label"] for m in result.conditions[0].summary["methods"] if m.get("encoder_weights") == RANDOM]
    warnings = [f"{label}: the encoder was randomly initialised, not loaded from CLIP; its rows say nothing about "
                "CLIPDenoising (pipeline checks only)." for label in random]
    worse = sum(bool(row["worse_than_input"]) for row in rows)
    if worse:
        warnings.append(f"{worse} row(s) score below their own low-dose input (marked 'worse than input'); each "
                        "condition's report says by how much.")
    warnings += [f"{item.condition.label}: {line}" for item in result.conditions
                 for line in item.summary["noise_level"]["warnings"]]
    if warnings:
        blocks += [Block("heading", "Warnings"), Block("list", items=tuple(warnings))]
    for preset in s["presets"]:
        blocks.append(Block("heading", f"Preset {preset}"))
        name = f"psnr_vs_dose_{preset}.png"
        if name in figures:
            blocks.append(Block("figure", name, caption=f"PSNR against dose under preset {preset}: one line per "
                                                       "method, one panel per kernel and thickness."))
        table = []
        for row in (r for r in rows if r["preset"] == preset):
            table.append((Link(row["condition_label"], row["report"].removesuffix(".html")), row["label"],
                          f"{_number(row['psnr_mean'], 2)} ± {_number(row['psnr_std'], 2)}",
                          _difference(row, "psnr", 2),
                          f"{_number(row['ssim_mean'], 4)} ± {_number(row['ssim_std'], 4)}",
                          _difference(row, "ssim", 4), _number(row["bias_hu"], 1), _number(row["noise_sd_hu"], 1),
                          "worse than input" if row["worse_than_input"] else "", str(row["slices"])))
        blocks.append(Block("table", header=("Condition", "Method", "PSNR (dB)", f"Δ PSNR vs {first} [95% CI]",
                                             "SSIM", "Δ SSIM [95% CI]", "HU bias", "Noise SD (HU)", "", "Slices"),
                            rows=tuple(table)))
    cost = []
    for item in result.conditions:
        seconds = item.summary["seconds_per_slice"]
        models = ", ".join(f"{m['label']} {seconds[m['key']]:.3g}" for m in item.summary["methods"]
                           if m["key"] in seconds and seconds[m["key"]] is not None)
        simulated = "real data" if item.simulation_seconds is None else (
            f"{item.simulation_seconds:.3g}" + (" (cached)" if item.cache_hits else ""))
        cost.append((Link(item.condition.label, f"{item.report}/report"), simulated, models))
    blocks += [
        Block("heading", "Cost"),
        Block("paragraph", "Seconds per slice on this run's machine: the simulation per thin slice (from the "
                           "cache record when cached; a slab of n slices costs n of them), and each method's "
                           f"denoising per evaluated slice. Simulations computed in this run: "
                           f"{s['simulations_computed']}, taken from the cache: {s['simulations_from_cache']}."),
        Block("table", header=("Condition", "Simulation s/slice", "Denoising s/slice"), rows=tuple(cost)),
        Block("heading", "Conditions"),
        Block("list", items=tuple(Link(f"{item.condition.label}: full evaluation report", f"{item.report}/report")
                                  for item in result.conditions)),
        Block("heading", "Settings"),
        Block("list", items=tuple(f"{k}: {v}" for k, v in s.items() if k != "patients")),
    ]
    if result.notes:
        blocks += [Block("heading", "Notes"), Block("list", items=tuple(result.notes))]
    return blocks


def write_overview(result: GeneralizationResult, folder: Path) -> None:
    """Write report.md, report.html, summary.json, table.csv and figures/ into ``folder`` (the staged benchmark
    folder, which :func:`~ldct_clip.generalization.run_generalization` then renames into place)."""
    from ldct_clip import __version__

    rows = table_rows(result)
    (folder / FIGURE_FOLDER).mkdir(exist_ok=True)
    figures = {f"psnr_vs_dose_{preset}.png": png_bytes(psnr_figure(result, preset))
               for preset in result.settings["presets"]}
    for name, png in figures.items():
        (folder / FIGURE_FOLDER / name).write_bytes(png)
    with (folder / TABLE_NAME).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "ldct_clip_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": result.settings,
        "conditions": [{"key": item.condition.key, "label": item.condition.label, "real": item.condition.real,
                        "dose": item.condition.dose, "kernel": item.condition.kernel,
                        "thickness_mm": item.condition.thickness_mm, "slab_slices": item.slab_slices,
                        "report": item.report, "simulation_seconds_per_thin_slice": item.simulation_seconds,
                        "simulation_from_cache": item.cache_hits > 0,
                        "seconds_per_slice": item.summary["seconds_per_slice"],
                        "warnings": item.summary["warnings"]} for item in result.conditions],
        "rows": rows,
        "figures": [f"{FIGURE_FOLDER}/{name}" for name in figures],
        "notes": result.notes,
    }
    (folder / SUMMARY_NAME).write_text(
        json.dumps(finite_json(summary), indent=2, allow_nan=False, default=str) + "\n", encoding="utf-8")
    blocks = _blocks(result, rows, list(figures))
    (folder / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (folder / "report.html").write_text(to_html(blocks, figures, "Generalization benchmark", _STYLE), encoding="utf-8")
