"""The distribution installs one top-level package, `mailprobe`, holding agent/ and probes/."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(out), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (path,) = out.glob("mailprobe-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_installs_only_the_mailprobe_package(wheel: zipfile.ZipFile) -> None:
    """top_level.txt names mailprobe alone and every file lies under mailprobe/ or the dist-info."""
    names = wheel.namelist()
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert wheel.read(top_level).decode().split() == ["mailprobe"]
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith((".dist-info", ".data"))} == {"mailprobe"}


def test_wheel_carries_every_module_of_agent_and_probes(wheel: zipfile.ZipFile) -> None:
    """A subpackage missing from pyproject's package list would silently drop its modules."""
    shipped = set(wheel.namelist())
    for folder in ("agent", "probes"):
        for source in (ROOT / folder).rglob("*.py"):
            rel = source.relative_to(ROOT).as_posix()
            assert f"mailprobe/{rel}" in shipped, rel
    assert "mailprobe/agent/py.typed" in shipped
    assert not any(n.startswith("mailprobe/tests/") for n in shipped)


def test_console_script_points_into_the_namespace(wheel: zipfile.ZipFile) -> None:
    """The `mailprobe` command runs mailprobe.agent.cli:main."""
    (entry,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    assert "mailprobe = mailprobe.agent.cli:main" in wheel.read(entry).decode()


# A None entry in sys.modules is how Python spells "this module cannot be imported".
_BLOCK_DEMO_EXTRA = """
import sys
for name in ("aiosmtpd", "pymap", "trustme", "rich"):
    sys.modules[name] = None
from mailprobe.agent.cli import main
raise SystemExit(main(["demo"]))
"""


def test_demo_without_the_extra_says_how_to_install_it() -> None:
    """`mailprobe demo` without aiosmtpd & co. exits 2 with the pip command, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCK_DEMO_EXTRA], capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "pip install 'mailprobe[demo]'" in proc.stderr
    assert "Traceback" not in proc.stderr
