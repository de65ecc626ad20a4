"""The GPU kit (``scripts/gpu_kit.sh``): what it would run on the device, that its wheelhouse is never
committed, and that the wheel it builds holds every package of ours.

The kit's full rehearsal (``--rehearse``: wheelhouse, a Python 3.12 stand-in for the image, install
with ``--no-index``, ``gpu-figures --small``) downloads half a gigabyte and is run by hand.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT / "scripts" / "gpu_kit.sh"


def _dry_run(**env: str) -> list[str]:
    proc = subprocess.run(
        ["bash", str(KIT), "--dry-run"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def test_dry_run_shows_an_offline_install_over_the_images_torch_then_the_figures_in_out() -> None:
    lines = _dry_run(GPU_FIGURES_ARGS="--repeats 3")
    commands = [line[2:] for line in lines if line.startswith("+ ")]
    venv = next(c for c in commands if " -m venv " in c)
    assert venv.startswith("python3 -m venv --system-site-packages ")
    installs = [c for c in commands if " -m pip install " in c]
    assert len(installs) == 2 and all("--no-index" in c for c in installs)
    assert "PIP_CONFIG_FILE=/dev/null" in installs[0]  # no index or find-links of the host's pip config
    assert "--find-links" in installs[0] and "requirements.txt" in installs[0]
    assert "--no-deps" in installs[1] and "lmms_vreason-" in installs[1]
    figures = next(c for c in commands if "gpu-figures" in c)
    assert "timeout 480 " in figures  # 8 minutes of the 15-minute lease
    for argument in ("--compile", "--skip-e2e", "--out $OUT", "--repeats 3"):
        assert argument in figures
    download = next(c for c in commands if " -m pip download " in c)
    for argument in ("--python-version 3.12", "--abi cp312", "--only-binary=:all:", "manylinux_2_17_x86_64"):
        assert argument in download
    assert "transformers==" in download and "pydantic==" in download
    assert any(line.startswith("Left out: the end-to-end lmms-eval run") for line in lines)
    assert 'carry=[".gpu-kit/wheelhouse"]' in "\n".join(lines)


def test_the_wheelhouse_is_ignored_by_git() -> None:
    proc = subprocess.run(
        ["git", "check-ignore", "-q", ".gpu-kit/wheelhouse/transformers-5.24.0-py3-none-any.whl"], cwd=ROOT
    )
    assert proc.returncode == 0


def test_the_wheel_holds_every_package_of_ours() -> None:
    """A regular (non-editable) install, as the kit's, has every folder of lmms_vreason that holds code."""
    block = re.search(r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M)
    assert block is not None
    listed = set(re.findall(r'"([\w.]+)"', block.group(1)))
    folders = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "lmms_vreason").rglob("__init__.py")
    }
    assert folders <= listed, sorted(folders - listed)
