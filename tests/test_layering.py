"""The core and the command line must work without Qt (napari's rule, enforced here)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["picker_gui.core", "picker_gui.cli"])
def test_importing_does_not_import_qt(module):
    code = (
        "import importlib, pkgutil, sys\n"
        f"import {module}\n"
        "import picker_gui.core as core\n"
        # Import every core module, not only the package, so none sneaks Qt in.
        "for m in pkgutil.walk_packages(core.__path__, 'picker_gui.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "from picker_gui.cli import build_parser\n"
        "build_parser()\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in {'PyQt6', 'PyQt5', 'PySide6', 'pyqtgraph'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"{module} pulled in Qt: {out.stdout.strip()}"
