"""Where the running lmms-eval evaluation will write, found and checked before any generation.

lmms-eval creates ``--output_path`` only after the whole evaluation has run, and when it cannot write
there it logs a warning and exits 0: every generated sample is lost. Its model constructor is not
told the path, so the backend looks it up in the evaluation that is constructing it (the
``evaluation_tracker`` / ``cli_args`` of lmms-eval's ``simple_evaluate``, which covers command-line
abbreviations and ``--config`` files) and checks it can write there while nothing has run yet.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Sequence
from pathlib import Path


class OutputPathError(OSError):
    """The evaluation's output folder cannot be created or written."""


def output_path_from_argv(argv: Sequence[str]) -> str | None:
    """``--output_path`` as written on a command line (exact spelling only)."""
    for i, arg in enumerate(argv):
        if arg == "--output_path" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--output_path="):
            return arg.split("=", 1)[1]
    return None


def running_output_path(argv: Sequence[str] = ()) -> str | None:
    """The output path of the lmms-eval evaluation on the call stack, else of ``argv``, else ``None``."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name == "simple_evaluate" and "lmms_eval" in frame.f_code.co_filename:
                local = frame.f_locals
                for holder in (local.get("evaluation_tracker"), local.get("cli_args")):
                    path = getattr(holder, "output_path", None)
                    if path:
                        return str(path)
                break
            frame = frame.f_back
    finally:
        del frame
    return output_path_from_argv(argv)


def check_writable(directory: str | Path, what: str = "--output_path") -> Path:
    """Create ``directory`` if needed and write a probe file in it, or raise :class:`OutputPathError`."""
    path = Path(directory).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".vreason-write-check-"):
            pass
    except OSError as exc:
        raise OutputPathError(
            f"{what} {directory} is not writable ({exc.strerror or exc}); nothing was generated. "
            "Fix the path and run again."
        ) from exc
    return path
