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
    assert len(commands) == 2 and commands[0].endswith("-m ldct_clip.demo") and "pytest" in commands[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert commands[1] in ci_lines


def test_every_command_has_a_console_script() -> None:
    setup = (ROOT / "setup.cfg").read_text()
    for command in ("train", "infer", "evaluate", "selfcheck", "demo"):
        assert f"ldct-clip-{command} = ldct_clip.{command}:cli" in setup


def test_demo_data_ships_with_the_install_not_only_with_dev() -> None:
    """The README's first command installs without extras, and the demo reads pydicom-data offline."""
    setup = (ROOT / "setup.cfg").read_text()
    install_requires = setup.split("install_requires =")[1].split("[")[0]
    assert "pydicom-data" in install_requires


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
