"""The README stays true: its argument table is the backend's, its quickstart is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from lmms_vreason.lmms.args import model_args_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_model_argument_table_matches_the_backend():
    text = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- model-args:start -->\n(.*?)<!-- model-args:end -->", text, re.S)
    assert table is not None
    assert table.group(1) == model_args_markdown()


def test_quickstart_has_an_install_and_a_test_command_and_ci_runs_them():
    text = (ROOT / "README.md").read_text()
    for marker, must in (("install", "vreason demo"), ("test", "pytest")):
        block = re.search(rf"<!-- quickstart:{marker} -->\n```bash\n(.+)\n```", text)
        assert block is not None and must in block.group(1)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "readme_command install" in ci and "readme_command test" in ci
    assert "pytest -q -m slow" in ci  # the end-to-end runs the default (fast) suite deselects


# ------------------------------------------------------------------------- the commands it shows


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def _commands(block: str) -> list[list[str]]:
    """A bash block's commands as argv lists: continuations joined, comments dropped, split at
    ``&&``/``;``, leading ``VAR=value`` assignments and a ``.venv/bin/`` prefix removed."""
    import shlex

    commands: list[list[str]] = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", ";", "||"):
                while current and re.fullmatch(r"[A-Z_]+=.*", current[0]):
                    current.pop(0)
                if current:
                    current[0] = current[0].removeprefix(".venv/bin/")
                    commands.append(current)
                current = []
            else:
                current.append(word)
    return commands


SHELL_EXAMPLES = {"$SLURM_NODEID": "0", "$SLURM_NNODES": "2"}
"""Shell variables the README's cluster commands use, and a value each takes on some node."""


def _readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = [command for block in _code_blocks(text) for command in _commands(block)]
    return [[SHELL_EXAMPLES.get(word, word) for word in command] for command in commands]


def _option(argv: list[str], name: str) -> str | None:
    for i, word in enumerate(argv):
        if word == name and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def test_every_vreason_command_in_the_readme_is_a_real_subcommand() -> None:
    from lmms_vreason.cli import SUBCOMMANDS

    text = (ROOT / "README.md").read_text()
    inline = set(re.findall(r"`(?:\.venv/bin/)?vreason ([a-z][\w-]*)", text))  # `vreason plot ...`
    named = inline | {c[1] for c in _readme_commands() if c[0] == "vreason" and len(c) > 1}
    assert {"run", "collate", "data", "demo", "plot", "compare"} <= named
    assert named <= set(SUBCOMMANDS), named - set(SUBCOMMANDS)


def test_the_readmes_vreason_run_and_collate_commands_name_existing_configs(monkeypatch) -> None:
    import fnmatch

    from lmms_vreason.experiments.configs import load_configs
    from lmms_vreason.experiments.launcher import build_parser

    monkeypatch.chdir(ROOT)
    known = load_configs(["model_configs"])
    labels = {c.name for c in known} | {c.lr_grid_group for c in known if c.lr_grid_group}
    runs = [c for c in _readme_commands() if c[:2] == ["vreason", "run"]]
    collates = [c for c in _readme_commands() if c[:2] == ["vreason", "collate"]]
    assert runs and collates
    for argv in runs:
        args, _ = build_parser().parse_known_args(argv[2 : argv.index("--") if "--" in argv else None])
        assert load_configs(args.configs), argv  # raises, naming the pattern, when one matches nothing
    for argv in collates:
        for pattern in [_option(argv, "--only")] if _option(argv, "--only") else []:
            assert fnmatch.filter(labels, pattern), argv
        baseline = _option(argv, "--baseline")
        assert baseline is None or baseline in labels, argv


def test_the_readmes_lmms_eval_commands_use_valid_models_arguments_and_tasks() -> None:
    from lmms_vreason.lmms.args import BACKEND_NAMES, parse_model_args
    from lmms_vreason.models.families import FAMILIES

    tasks = set()
    for path in (ROOT / "tasks").glob("*.yaml"):
        tasks |= set(re.findall(r"^(?:task|group): (\S+)$", path.read_text(), re.M))
    builtin = {family.builtin_backend for family in FAMILIES.values()}
    checked = 0
    for argv in _readme_commands():
        if "lmms_eval" not in argv and argv[0] != "lmms-eval":
            continue
        model = _option(argv, "--model")
        assert model in set(BACKEND_NAMES) | builtin, argv
        for task in (_option(argv, "--tasks") or "").split(","):
            assert task in tasks, (task, argv)
        model_args = _option(argv, "--model_args")
        if model in BACKEND_NAMES and model_args and "..." not in model_args:
            parse_model_args(dict(kv.split("=", 1) for kv in model_args.split(",")), backend=model)
            checked += 1
    assert checked >= 2
