"""The docs cannot drift: every hook has its exact signature as a heading, and examples run."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from jetplug import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"
HOOKS_DOC = DOCS / "plugin_hooks.md"


def signature_heading(name: str) -> str:
    params = inspect.signature(getattr(hookspecs, name)).parameters
    return f"## `{name}({', '.join(params)})`"


def test_every_hook_spec_has_a_docstring() -> None:
    for name in hookspecs.all_hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 80, (
            f"{name}: the spec docstring must say when it fires and what it returns"
        )
        assert ":return:" in doc, f"{name}: the spec docstring must state its result contract"


def test_every_hook_has_a_section_with_its_exact_signature() -> None:
    text = HOOKS_DOC.read_text()
    headings = set(re.findall(r"^## `.*`$", text, flags=re.M))
    expected = {signature_heading(n) for n in hookspecs.all_hook_names()}
    assert expected - headings == set(), (
        "hooks missing from docs/plugin_hooks.md (or signature differs)"
    )
    assert headings - expected == set(), "docs/plugin_hooks.md documents hooks that do not exist"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_python_examples_in_docs_run(path: Path) -> None:
    for block in python_blocks(path):
        namespace: dict[str, object] = {"__name__": f"docs_example_{path.stem}"}
        exec(compile(block, f"{path.name}:example", "exec"), namespace)


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_hook_examples_register_as_valid_plugins(path: Path) -> None:
    """Each example that implements hooks registers cleanly: no misspelt hook, no bad signature."""
    import types

    from jetplug.plugins import Selection, discover

    for i, block in enumerate(python_blocks(path)):
        if "@hookimpl" not in block:
            continue
        module = types.ModuleType(f"docs_{path.stem}_{i}")
        exec(compile(block, f"{path.name}:example{i}", "exec"), module.__dict__)
        plugins = discover(Selection(), extra=[(module.__name__, module)], autoload=False)
        record = plugins.records[module.__name__]
        assert record.status == "enabled", f"{path.name} example {i}: {record.reason}"
        assert record.hooks, f"{path.name} example {i} implements no hook"
