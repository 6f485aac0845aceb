"""docs/configuration.md is the output of `jetplug config reference` and stays so.

Regenerate it after changing a config model (core or a bundled plugin):

    .venv/bin/python tests/test_config_reference.py

which writes what `jetplug config reference -p ack_consumer -p caf_adapter -p caf_simulator
-p result_consumer` prints (the bundled plugins enabled, nothing else).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import msgspec
import pytest
from jetplug.plugins import Selection, discover, installed_names
from jetplug.reference import config_reference
from jetplug.settings import CoreSettings

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BUNDLED = ("ack_consumer", "caf_adapter", "caf_simulator", "result_consumer")
REGENERATE = "regenerate it with `.venv/bin/python tests/test_config_reference.py`"


def generate() -> str:
    """The reference with the bundled plugins that are installed."""
    names = tuple(n for n in BUNDLED if n in installed_names())
    models = discover(Selection(cli_plugins=names)).config_schemas() if names else {}
    return config_reference(models)


def sections(text: str) -> dict[str, str]:
    """``## heading`` -> the section's text."""
    parts = re.split(r"^(## .*)$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def core_keys(model: type[msgspec.Struct] = CoreSettings, prefix: str = "") -> list[str]:
    info = msgspec.inspect.type_info(model)
    assert isinstance(info, msgspec.inspect.StructType)
    keys: list[str] = []
    for f in info.fields:
        key = f"{prefix}.{f.encode_name}" if prefix else f.encode_name
        if isinstance(f.type, msgspec.inspect.StructType):
            keys.extend(core_keys(f.type.cls, key))
        else:
            keys.append(key)
    return keys


def test_every_core_table_is_documented_exactly() -> None:
    doc = sections(DOC.read_text())
    core = sections(config_reference({}))
    assert core, "no core tables generated"
    for heading, body in core.items():
        assert heading in doc, f"docs/configuration.md lacks {heading}; {REGENERATE}"
        assert doc[heading].strip() == body.strip(), (
            f"docs/configuration.md: {heading} is out of date; {REGENERATE}"
        )


def test_every_core_key_appears_with_its_environment_name() -> None:
    text = DOC.read_text()
    keys = core_keys()
    assert len(keys) > 30
    for key in keys:
        env = "JETPLUG_" + "__".join(p.upper() for p in key.split("."))
        assert f"| `{key}` |" in text and f"`{env}`" in text, f"{key}: missing; {REGENERATE}"


def test_every_bundled_plugin_key_is_documented() -> None:
    installed = [n for n in BUNDLED if n in installed_names()]
    if not installed:
        pytest.skip("no bundled plugin is installed")
    doc = sections(DOC.read_text())
    for heading, body in sections(generate()).items():
        if not heading.startswith("## [plugins."):
            continue
        assert heading in doc, f"docs/configuration.md lacks {heading}; {REGENERATE}"
        keys = re.findall(r"^\| (`[^`]+`) \|", body, flags=re.M)
        missing = [k for k in keys if f"| {k} |" not in doc[heading]]
        assert not missing, f"{heading}: {missing} not documented; {REGENERATE}"


def test_the_cli_prints_the_same_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from jetplug.cli import make_cli

    args = ["config", "reference"]
    for name in BUNDLED:
        if name in installed_names():
            args += ["-p", name]
    monkeypatch.chdir(tmp_path)  # no ./jetplug.toml
    result = CliRunner().invoke(make_cli(), args, env={"JETPLUG_CONFIG": ""})
    assert result.exit_code == 0, result.output
    assert result.output == generate()


if __name__ == "__main__":
    DOC.write_text(generate())
    sys.stdout.write(f"wrote {DOC}\n")
