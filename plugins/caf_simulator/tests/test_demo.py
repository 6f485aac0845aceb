"""The demo loop end to end (adapter, simulator, ack and result consumers, embedded server)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

JETPLUG = str(Path(sys.executable).with_name("jetplug"))


def run_demo(tmp_path: Path, count: int, extra: str = "") -> tuple[int, str]:
    config = tmp_path / "demo.toml"
    config.write_text(
        f"""
[host]
data_dir = "{tmp_path / "data"}"
plugins = ["caf_adapter", "ack_consumer", "result_consumer", "caf_simulator"]
log_level = "error"
[plugins.caf_simulator]
demo_rate = 400.0
{extra}
"""
    )
    proc = subprocess.run(
        [JETPLUG, "caf", "demo", "-c", str(config), "--count", str(count)],
        capture_output=True,
        text=True,
        timeout=150,
    )
    return proc.returncode, proc.stdout + proc.stderr


def number(text: str, label: str) -> int:
    match = re.search(rf"^\s*{re.escape(label)}\s+(\d+)", text, flags=re.M)
    assert match, f"no line {label!r} in:\n{text}"
    return int(match.group(1))


def counts(text: str, label: str) -> dict[str, int]:
    line = re.search(rf"^\s*{re.escape(label)}\s+(.*)$", text, flags=re.M)
    assert line, f"no line {label!r}"
    return {k: int(v) for k, v in re.findall(r"(\w+) (\d+)", line.group(1))}


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_accounts_for_every_assignment(tmp_path: Path) -> None:
    code, out = run_demo(tmp_path, 200)
    assert code == 0, out
    assert re.search(r"^\s*lost: 0$", out, flags=re.M), out
    published = number(out, "assignments published")
    assert published == 200
    final = counts(out, "final states")
    assert sum(final.values()) == published, "every published assignment reached a final state"
    acks = counts(out, "acks by status")
    results = counts(out, "results by status")
    assert set(acks) <= {"accepted", "rejected", "error"} and acks.get("accepted", 0) > acks.get(
        "rejected", 0
    )
    assert sum(results.values()) == number(out, "usage events"), (
        "every processed result billed once"
    )
    assert final.get("rejected", 0) == acks.get("rejected", 0)
    assert "p50" in out and "p99" in out


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_demo_reports_loss_with_exit_code_1(tmp_path: Path) -> None:
    """Results that never come and no expiry: those assignments never settle, and the demo says
    so."""
    extra = (
        "never_finish = 1.0\nrejected = 0.0\nack_error = 0.0\ndemo_settle_timeout = 2.0\n"
        "[plugins.caf_adapter]\nexpiry_enabled = false"
    )
    code, out = run_demo(tmp_path, 20, extra=extra)
    assert code == 1, out
    assert re.search(r"^\s*lost: 20$", out, flags=re.M), out
    assert "never settled" in out


@pytest.mark.timeout(60)
def test_demo_needs_the_caf_plugins(tmp_path: Path) -> None:
    code, out = run_demo(tmp_path, 5, extra="[plugins.result_consumer]\nenabled = false")
    assert code == 2 and "result_consumer" in out
