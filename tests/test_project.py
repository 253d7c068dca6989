"""The README's set-up commands and CI stay in step, and the CLIs are installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    return [line.strip() for line in (ROOT / "README.md").read_text().splitlines()[:12]
            if line.startswith("    python3 -m venv")]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = _readme_commands()
    assert len(commands) == 2 and "ldct_clip.selfcheck" in commands[0] and "pytest" in commands[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[1] in ci_lines


def test_selfcheck_runs_and_reports_random_weights_loudly() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ldct_clip.selfcheck", "--encoder-weights", "random", "--size", "64"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "self-check      : OK" in result.stdout
    assert "decoder 10,987,776" in result.stdout and "encoder trunk 8,562,528" in result.stdout
    assert "NOT CLIPDenoising's" in result.stdout and "RANDOMLY INITIALISED" in result.stderr


def test_selfcheck_with_missing_weights_file_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ldct_clip.selfcheck", "--encoder-weights", str(tmp_path / "RN50.pt")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "RN50.pt: encoder weights file not found" in result.stderr
