"""The plugin-author docs cannot drift from what they describe.

- docs/testing_plugins.md: every Python example is a test module; they are run with pytest
  against a real server.
- docs/writing_plugins.md: the worked example's files (``python title="PATH"`` blocks) are the
  files of examples/order-audit-plugin, and that example is exactly `jetplug new-plugin
  order_audit` plus those files (and its README and description).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _cli import jetplug_env
from jetplug.scaffold import Names, render

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
EXAMPLE = REPO / "examples" / "order-audit-plugin"


def titled_blocks(path: Path) -> dict[str, str]:
    return dict(re.findall(r'```python title="([^"]+)"\n(.*?)```', path.read_text(), flags=re.S))


def test_worked_example_files_are_the_example_plugin() -> None:
    blocks = titled_blocks(DOCS / "writing_plugins.md")
    assert sorted(blocks) == [
        "src/jetplug_order_audit/config.py",
        "src/jetplug_order_audit/handler.py",
        "src/jetplug_order_audit/plugin.py",
        "tests/test_handler.py",
        "tests/test_order_audit.py",
    ]
    for rel, text in blocks.items():
        assert text == (EXAMPLE / rel).read_text(), (
            f"docs/writing_plugins.md's {rel} differs from examples/order-audit-plugin/{rel}"
        )


def test_the_example_is_the_scaffold_plus_the_documented_files() -> None:
    documented = set(titled_blocks(DOCS / "writing_plugins.md"))
    generated = render(Names.of("order_audit"))

    def made_by_tools(rel: Path) -> bool:  # caches and build metadata, ignored by git
        return any(
            (part.startswith(".") and part != ".gitignore")
            or part == "__pycache__"
            or part.endswith(".egg-info")
            for part in rel.parts
        )

    on_disk = {
        str(p.relative_to(EXAMPLE))
        for p in EXAMPLE.rglob("*")
        if p.is_file() and not made_by_tools(p.relative_to(EXAMPLE))
    }
    assert on_disk == set(generated), "the example's files differ from the scaffold's"
    for rel, text in generated.items():
        if rel in documented or rel == "README.md":
            continue
        actual = (EXAMPLE / rel).read_text()
        if rel == "pyproject.toml":  # only the description was edited
            text = re.sub(r"^description = .*$", "", text, flags=re.M)
            actual = re.sub(r"^description = .*$", "", actual, flags=re.M)
        assert actual == text, f"examples/order-audit-plugin/{rel} is not what new-plugin writes"


@pytest.mark.timeout(120)
def test_testing_guide_examples_pass_under_pytest(tmp_path: Path) -> None:
    text = (DOCS / "testing_plugins.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    conftest = [b for b in blocks if "import fresh_server, nats_server, nc" in b]
    tests = [b for b in blocks if "def test_" in b]
    assert len(conftest) == 1 and len(tests) >= 3
    (tmp_path / "conftest.py").write_text(conftest[0])
    for i, block in enumerate(tests):
        (tmp_path / f"test_doc_example_{i}.py").write_text(block)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            str(tmp_path),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
        env=jetplug_env(),
    )
    expected = sum(len(re.findall(r"^(?:async )?def test_", b, flags=re.M)) for b in tests)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{expected} passed" in done.stdout, done.stdout[-2000:]


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def test_relative_links_in_the_docs_resolve() -> None:
    pages = [REPO / "README.md", *sorted(DOCS.glob("*.md")), EXAMPLE / "README.md"]
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md":
                headings = re.findall(r"^#+ (.*)$", dest.read_text(), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
