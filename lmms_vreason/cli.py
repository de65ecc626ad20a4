"""The ``vreason`` command: one entry point for the tools users run, as subcommands.

``vreason run`` launches experiment configs, ``vreason collate`` prints their Table 1, and so on
(``vreason --help`` lists them). Each subcommand lives in the module that does its job and has a
``main(argv)``; this module only dispatches, importing that module when the subcommand is named,
so ``vreason --help`` and the torch-free subcommands (``collate``, ``compare``, ...) never load
torch or lmms-eval.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": ("lmms_vreason.data", "download the evaluation data; check it before spending GPU time"),
    "run": ("lmms_vreason.experiments.launcher", "run experiment configs through lmms-eval, resumably"),
    "grid-score": ("lmms_vreason.lmms.grid_score", "score every lr of a one-pass lr-grid run (lr_grid=...)"),
    "collate": ("lmms_vreason.experiments.collate", "print run folders as the paper's Table 1"),
    "compare": ("lmms_vreason.analysis.compare", "compare two runs doc by doc; optional regression gate"),
    "bundle": (
        "lmms_vreason.experiments.bundle",
        "pack a run for submission (results, samples, provenance, manifest); --verify rescores one",
    ),
    "plot": ("lmms_vreason.analysis.plots", "plot the paper's entropy/alpha figures from telemetry"),
    "efficiency": ("lmms_vreason.analysis.efficiency", "tokens, time and memory vs a baseline (Tables 5/6)"),
    "bench": (
        "lmms_vreason.bench.decode_cost",
        "time per-token decoding and peak memory of V-Reason vs the plain loop",
    ),
    "bench-media": (
        "lmms_vreason.bench.media",
        "media costs: the prefetch worker on vs off; decord vs torchcodec",
    ),
    "gpu-figures": (
        "lmms_vreason.bench.gpu_figures",
        "the GPU cost figures (7B shape, random weights; --small on CPU)",
    ),
    "demo": ("lmms_vreason.testing.demo", "offline end-to-end demo: tiny model + fixture benchmark"),
    "tiny": (
        "lmms_vreason.testing.tiny",
        "write a tiny random-weight Qwen2.5-VL, Qwen3-VL or Qwen2-VL checkpoint",
    ),
    "fixtures": ("lmms_vreason.testing.fixtures", "write the synthetic fixture benchmark"),
    "train-tiny": (
        "lmms_vreason.testing.training",
        "train the tiny Qwen2.5-VL on fixture clips (how the shipped trained checkpoint was made)",
    ),
}
"""Subcommand -> (module with ``main(argv)``, one-line summary)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written (they hold examples), and every option's default in its help.

    Unlike ``ArgumentDefaultsHelpFormatter``, a help text that already explains its default (e.g.
    "default: visible GPUs" for a ``None`` that is resolved later) is left alone, and flags and
    empty defaults get no "(default: False)" noise.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        silent = (
            "default" in text.lower()
            or not action.option_strings
            or action.default is None
            or action.default is argparse.SUPPRESS
            or action.default == []
            or action.nargs == 0  # flags
        )
        return text if silent else f"{text} (default: %(default)s)"


def prog(subcommand: str) -> str:
    """The name a subcommand's usage line shows (``vreason run``)."""
    return f"vreason {subcommand}"


def _parser() -> argparse.ArgumentParser:
    """``vreason``'s own parser: it only picks the subcommand; the subcommand parses the rest.

    The two positionals are hidden from the help (``SUBCOMMAND``/``args`` are argparse placeholders,
    not documentation); the usage line and the command list say what to type."""
    width = max(len(name) for name in SUBCOMMANDS)
    listing = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in SUBCOMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="vreason",
        usage="vreason <command> [<command's options>]",
        description="V-Reason for Qwen2.5-VL, Qwen3-VL and Qwen2-VL: experiment, analysis and test tools.",
        epilog=f"commands:\n{listing}\n\n`vreason <command> --help` shows a command's options and defaults.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("subcommand", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vreason SUBCOMMAND ARGS...``; returns the subcommand's exit code."""
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.subcommand is None:
        parser.print_help(sys.stderr)
        return 2
    if args.subcommand not in SUBCOMMANDS:
        parser.error(f"unknown command {args.subcommand!r}; the commands are: {', '.join(SUBCOMMANDS)}")
    module = importlib.import_module(SUBCOMMANDS[args.subcommand][0])
    result = module.main(args.args)
    # bench's main returns its measurements (for library use); every other main an exit code.
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
