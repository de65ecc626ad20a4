"""The ``vreason`` command: every subcommand answers ``--help`` with its defaults, and the layers
below it import only what they need (configs and analysis never load torch or lmms-eval)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lmms_vreason.cli import SUBCOMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_is_registered() -> None:
    scripts = (ROOT / "pyproject.toml").read_text().split("[project.scripts]")[1].split("\n[")[0]
    assert re.search(r'^vreason = "lmms_vreason\.cli:main"$', scripts, re.M)


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert set(SUBCOMMANDS) == {
        "data",
        "run",
        "grid-score",
        "collate",
        "compare",
        "bundle",
        "plot",
        "efficiency",
        "bench",
        "bench-media",
        "gpu-figures",
        "demo",
        "tiny",
        "fixtures",
        "train-tiny",
    }
    for name in SUBCOMMANDS:
        assert f"\n  {name} " in out
    # argparse's placeholders are not documentation: no positional-arguments section, no SUBCOMMAND.
    assert out.startswith("usage: vreason <command> [<command's options>]\n")
    assert "SUBCOMMAND" not in out and "positional arguments" not in out and "\n  args " not in out


def test_no_command_prints_the_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: vreason <command>") and "\n  run " in err


@pytest.mark.parametrize(
    ("subcommand", "default"),
    [
        ("data", "{download,check}"),
        ("run", "(default: accelerate)"),
        ("collate", "(default: md)"),
        ("compare", "(default: 10000)"),
        ("bundle", "(default: RUN_DIR.bundle.tar.gz)"),
        ("plot", "(default: 1)"),
        ("efficiency", "(default: all in the telemetry)"),
        ("bench", "(default: cpu-proxy)"),
        ("bench-media", "{prefetch,readers}"),
        ("demo", "(default: runs/demo)"),
        ("tiny", "(default: small)"),
        ("fixtures", "(default: 0)"),
    ],
)
def test_subcommand_help_shows_defaults(
    subcommand: str, default: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([subcommand, "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert out.startswith(f"usage: vreason {subcommand} ")
    assert default in out


def test_unknown_subcommand_and_exit_codes_pass_through(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["nope"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "unknown command 'nope'; the commands are: data, run," in err
    assert main(["collate", str(tmp_path)]) == 1  # an empty run root: the subcommand's own code
    assert "no lmms-eval results" in capsys.readouterr().err


def test_configs_analysis_and_help_import_neither_torch_nor_lmms_eval() -> None:
    # A config must validate in milliseconds, and the analysis tools run where no model can.
    code = """
import sys
from lmms_vreason.cli import main
for argv in (["--help"], ["collate", "--help"], ["compare", "--help"], ["efficiency", "--help"], ["bundle", "--help"]):
    try:
        main(argv)
    except SystemExit as exc:
        assert exc.code == 0, argv
import lmms_vreason.experiments.configs, lmms_vreason.experiments.launcher, lmms_vreason.experiments.collate
import lmms_vreason.analysis.runs, lmms_vreason.analysis.traces, lmms_vreason.analysis.plots
from lmms_vreason.experiments.configs import load_configs
assert len(load_configs(["model_configs"])) >= 80
loaded = sorted(m for m in ("torch", "lmms_eval", "lmms_vreason.lmms.backend") if m in sys.modules)
print("LOADED", loaded)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("LOADED []")
