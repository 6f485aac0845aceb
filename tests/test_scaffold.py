"""`jetplug new-plugin`: names, files, refusal to overwrite, and generated tests that pass."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from _cli import jetplug_env, run_cli
from jetplug.errors import UsageError
from jetplug.scaffold import Names, new_plugin, render

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Demo", "lowercase Python identifier"),
        ("demo-x", "lowercase Python identifier"),
        ("1demo", "lowercase Python identifier"),
        ("_demo", "lowercase Python identifier"),
        ("", "lowercase Python identifier"),
        ("démo", "lowercase Python identifier"),
        ("class", "Python keyword"),
        ("metrics", "built-in plugin"),
    ],
)
def test_invalid_names_are_refused(tmp_path: Path, name: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as info:
        new_plugin(name, tmp_path / "out")
    assert info.value.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_names_derive_from_the_plugin_name() -> None:
    n = Names.of("order_audit")
    assert (n.pkg, n.dist, n.stream, n.durable, n.subject) == (
        "jetplug_order_audit",
        "jetplug-order-audit",
        "ORDER_AUDIT",
        "order-audit",
        "order_audit.events",
    )


def test_the_distribution_has_every_part(tmp_path: Path) -> None:
    target = new_plugin("demo_x", tmp_path / "demo")
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == [
        ".gitignore",
        "README.md",
        "pyproject.toml",
        "src/jetplug_demo_x/__init__.py",
        "src/jetplug_demo_x/config.py",
        "src/jetplug_demo_x/handler.py",
        "src/jetplug_demo_x/plugin.py",
        "src/jetplug_demo_x/py.typed",
        "tests/conftest.py",
        "tests/test_demo_x.py",
        "tests/test_handler.py",
    ]
    project = tomllib.loads((target / "pyproject.toml").read_text())
    assert project["project"]["name"] == "jetplug-demo-x"
    assert project["project"]["entry-points"]["jetplug"] == {"demo_x": "jetplug_demo_x.plugin"}
    assert any(d.startswith("jetplug>=") for d in project["project"]["dependencies"])
    assert project["project"]["optional-dependencies"]["test"][0].startswith("jetplug[testing]")
    assert project["build-system"]["build-backend"] == "hatchling.build"
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["packages"] == ["src/jetplug_demo_x"]
    plugin = (target / "src/jetplug_demo_x/plugin.py").read_text()
    assert 'NAME = "demo_x"' in plugin and "if msg.consumer.owner != NAME:" in plugin
    tests = (target / "tests/test_demo_x.py").read_text()
    assert "check_consumer_plugin" in tests and "${" not in tests
    for text in render(Names.of("demo_x")).values():
        assert "${" not in text


def test_an_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="already exists"):
        new_plugin("demo_x", target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert new_plugin("demo_x", empty) == empty  # an empty directory is fine


def test_cli_new_plugin(tmp_path: Path) -> None:
    done = run_cli("new-plugin", "order_audit", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "created jetplug-order-audit/" in done.stdout and "pip install -e" in done.stdout
    assert (tmp_path / "jetplug-order-audit/src/jetplug_order_audit/plugin.py").is_file()
    again = run_cli("new-plugin", "order_audit", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = run_cli("new-plugin", "Order-Audit", "--dir", "x", cwd=tmp_path)
    assert bad.returncode == 2 and "lowercase Python identifier" in bad.stderr
    assert not (tmp_path / "x").exists()
    other = run_cli("new-plugin", "demo_x", "--dir", "sub/dir", cwd=tmp_path)
    assert other.returncode == 0 and (tmp_path / "sub/dir/pyproject.toml").is_file()


def _venv_with_this_jetplug(where: Path) -> Path:
    """A fresh venv (no pip of its own) that sees this venv's packages, jetplug included."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    parent = sysconfig.get_path("purelib")
    # a .pth line starting with `import` runs, so the parent's own .pth files (editables) work
    (Path(site) / "_jetplug_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    return python


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_generated_plugin_passes_its_own_tests_after_pip_install_e(tmp_path: Path) -> None:
    target = new_plugin("demo_x", tmp_path / "jetplug-demo-x")
    python = _venv_with_this_jetplug(tmp_path / "venv")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-e",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    env = jetplug_env()
    # the nats-server binary of jetplug[testing] sits next to this venv's python
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    where = subprocess.run(
        [str(python), "-c", "import jetplug_demo_x; print(jetplug_demo_x.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    editable = str(target / "src/jetplug_demo_x/__init__.py")
    assert where.strip() == editable, "not an editable install"
    tests = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=target,
        capture_output=True,
        text=True,
        env=env,
        timeout=150,
    )
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert "7 passed" in tests.stdout, tests.stdout[-2000:]
    plugins = subprocess.run(
        [str(python), "-c", "from jetplug.cli import main; main()", "plugins"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert any(line.split()[:2] == ["demo_x", "enabled"] for line in plugins.stdout.splitlines()), (
        plugins.stdout + plugins.stderr
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_templates_are_in_the_wheel(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("jetplug-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "jetplug/templates/plugin/src/__pkg__/plugin.py.tmpl" in names
    assert "jetplug/templates/plugin/tests/test___name__.py.tmpl" in names
