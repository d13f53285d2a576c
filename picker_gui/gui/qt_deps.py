"""System libraries Qt's X11 (xcb) platform plugin needs, and the one command that installs them.

PyQt6's wheels carry Qt but not the X11 client libraries; on a fresh Debian or Ubuntu
machine Qt then aborts with "Could not load the Qt platform plugin xcb", naming only the
first missing library. Here ``ldd`` lists every missing one before Qt starts, and they are
mapped to their Debian/Ubuntu packages.

``python -m picker_gui.gui.qt_deps`` prints what is missing (exit 1) or nothing (exit 0);
with ``--install`` it runs ``apt-get install`` when it can (root, apt-get present) and
otherwise prints the command to run. ``make run`` calls it first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

#: Library file -> Debian/Ubuntu package (names stable from Debian 11 / Ubuntu 20.04 on).
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
}


def _qt_binaries() -> list[Path]:
    """The xcb platform plugin, the SVG icon plugin and the Qt libraries the window loads,
    from PyQt6's wheel."""
    try:
        import PyQt6
    except ImportError:
        return []
    qt = Path(PyQt6.__file__).parent / "Qt6"
    found = [qt / "plugins" / "platforms" / "libqxcb.so", qt / "plugins" / "imageformats" / "libqsvg.so"]
    for name in ("Core", "Gui", "Widgets", "XcbQpa", "Svg", "DBus", "OpenGL"):
        found += sorted((qt / "lib").glob(f"libQt6{name}.so.6"))
    return [p for p in found if p.exists()]


def missing_libraries() -> list[str]:
    """Shared libraries the xcb plugin (or its Qt library) needs and the system lacks."""
    if not sys.platform.startswith("linux") or shutil.which("ldd") is None:
        return []
    binaries = _qt_binaries()
    if not binaries:
        return []
    try:  # one ldd for all of them
        out = subprocess.run(["ldd", *map(str, binaries)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    missing: dict[str, None] = {}
    for line in out.splitlines():
        if "not found" in line:
            missing.setdefault(line.split("=>")[0].strip(), None)
    return list(missing)


def install_command(libraries: list[str]) -> str:
    packages = sorted({PACKAGES.get(lib, lib) for lib in libraries})
    prefix = "" if os.geteuid() == 0 else "sudo "
    return f"{prefix}apt-get install -y {' '.join(packages)}"


def uses_xcb() -> bool:
    """Whether Qt will start its X11 plugin (not offscreen, not Wayland-only, not macOS)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(":")[0] == "xcb"
    return sys.platform.startswith("linux") and bool(os.environ.get("DISPLAY")) and not os.environ.get("WAYLAND_DISPLAY")


def missing_xcb_message() -> str | None:
    """One line for the user when the window cannot start for want of system libraries."""
    if not uses_xcb():
        return None
    missing = missing_libraries()
    if not missing:
        return None
    return (f"picker-gui: the window needs system libraries that are missing ({', '.join(missing)}); "
            f"install them with: {install_command(missing)}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    missing = missing_libraries()
    if not missing:
        return 0
    command = install_command(missing)
    if "--install" in args and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for _ in range(3):  # a library found only now may need others of its own
            print(f"Installing the system libraries Qt needs: {command}", file=sys.stderr)
            subprocess.run(command.split() + ["-qq"], check=False, env=env)
            missing = missing_libraries()
            if not missing:
                return 0
            command = install_command(missing)
        print(f"Could not install them all; run: {command}", file=sys.stderr)
        return 1
    print(f"The window needs system libraries that are missing ({', '.join(missing)}). Install them with:\n  {command}",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
