"""The package's layers import one way: method <- model families <- lmms-eval adapter; tools beside.

Read from the source (every ``import`` / ``from ... import`` statement, wherever it sits in a module),
so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lmms_vreason"

FORBIDDEN: dict[str, tuple[str, ...]] = {
    # the method: plain torch + transformers building blocks, no evaluation harness, no model family
    "core": (
        "lmms_eval",
        "lmms_vreason.lmms",
        "lmms_vreason.models",
        "lmms_vreason.experiments",
        "lmms_vreason.analysis",
        "lmms_vreason.testing",
        "lmms_vreason.tasks",
    ),
    # model-family adapters sit on the method only
    "models": (
        "lmms_eval",
        "lmms_vreason.lmms",
        "lmms_vreason.experiments",
        "lmms_vreason.analysis",
        "lmms_vreason.tasks",
    ),
    # reading media by Video-R1's rules: decoders and torch only, usable by the task loader and the
    # data check without the method, a model family or lmms-eval
    "media": (
        "lmms_eval",
        "lmms_vreason.core",
        "lmms_vreason.lmms",
        "lmms_vreason.models",
        "lmms_vreason.experiments",
        "lmms_vreason.analysis",
        "lmms_vreason.testing",
        "lmms_vreason.tasks",
    ),
    # offline tools read files; they never load lmms-eval's machinery or the backend
    "analysis": ("lmms_eval", "lmms_vreason.lmms", "lmms_vreason.experiments", "lmms_vreason.models"),
    "experiments": ("lmms_eval", "lmms_vreason.lmms.backend", "lmms_vreason.models"),
}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a source file imports (relative imports resolved against the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_does_not_import_what_sits_above_it(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no modules under {layer}/"
    offences = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in files
        for name in sorted(imported_modules(path))
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[layer])
    ]
    assert not offences, "\n".join(offences)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The scan is not vacuous: it finds an import inside a function body."""
    source = PACKAGE / "core" / "decode.py"
    assert "lmms_vreason.core.step" in imported_modules(source)
    lazy = PACKAGE / "lmms" / "backend.py"
    assert any(name.startswith("transformers") for name in imported_modules(lazy))


def test_settings_and_argument_schema_import_no_torch() -> None:
    """A config or a command line is validated in milliseconds, before torch or a model loads."""
    code = (
        "import sys; import lmms_vreason.core.settings, lmms_vreason.lmms.args; "
        "print(sorted(m for m in ('torch', 'transformers', 'lmms_eval') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
