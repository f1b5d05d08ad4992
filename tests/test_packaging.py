"""The installed package: minids.cli inside minids, no top-level ``cli``, every command runs."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from minids.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_minids_cli_and_no_top_level_cli(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", "*.h5", "*.npz"))
    shutil.copy(ROOT / "minids/data/fashion_mnist_mini.npz", source / "minids/data")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path),
                            str(source)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("minids-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "minids/data/fashion_mnist_mini.npz" in names
    assert {name.split("/")[0] for name in names} == {"minids", wheel.name.split("-py")[0] + ".dist-info"}
    for module in COMMANDS.values():
        assert module[0].replace(".", "/") + ".py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "minids = minids.cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


@pytest.mark.parametrize("command", [[]] + [[name] for name in sorted(COMMANDS)])
def test_console_script_help(command, tmp_path):
    script = shutil.which("minids")
    assert script is not None, "the minids console script is not installed"
    result = subprocess.run([script, *command, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: minids")
