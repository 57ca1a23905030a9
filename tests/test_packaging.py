"""The wheel carries the whole package: every module, every shipped weights folder and the example photos.

Built here with the same backend pip uses (``pip wheel``), so a subpackage or weights folder that the packaging
settings leave out fails this test instead of failing a user after ``pip install .``."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_holds_every_module_weights_file_and_example(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode and "No module named" in done.stderr and "setuptools" in done.stderr:
        pytest.skip("setuptools is not installed beside pip")
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("captioner-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"captioner/{p.relative_to(ROOT / 'captioner').as_posix()}" for p in (ROOT / "captioner").rglob("*.py")}
    expected |= {
        f"captioner/weights/{p.relative_to(ROOT / 'weights').as_posix()}"
        for p in (ROOT / "weights").rglob("*")
        if p.is_file()
    }
    expected |= {f"captioner/examples/{p.name}" for p in (ROOT / "examples").iterdir() if p.is_file()}
    missing = sorted(expected - inside)
    assert not missing, f"{len(missing)} file(s) left out of the wheel, first: {missing[:5]}"
