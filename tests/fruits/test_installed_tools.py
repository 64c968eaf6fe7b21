"""The installed tools import without the repository on sys.path (as `make demo` runs `.venv/bin/fruits`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_demo_modules_import_from_the_installed_package_alone(tmp_path: Path) -> None:
    # GIVEN a process started outside the repository, without PYTHONPATH (only the installed packages)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import fruits.cli.main, fruits.local.demo, fruits.local.provision; print('ok')"
    # WHEN the demo's modules are imported
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    # THEN they import (regression: fruits.local.provision imported the uninstalled cdk package)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
