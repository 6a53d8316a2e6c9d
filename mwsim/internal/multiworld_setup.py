"""The one-time MultiWorld step, run by the project's install (idempotent).

Upstream's first ``import multiworld`` patches the installed torch with the ``patch``
program and then exits the process. It runs ``patch`` through ``os.system`` and marks
itself configured even when ``patch`` is missing, so this step checks for ``patch``
first and verifies afterwards that torch really was patched.

Usage: ``python -m mwsim.internal.multiworld_setup``
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

PATCH_MISSING = (
    "mwsim: the 'patch' program is missing; multiworld needs it once to patch torch.\n"
    "       Install it (Debian/Ubuntu: apt-get install patch; Fedora: dnf install patch;\n"
    "       macOS: it ships with the Xcode command line tools) and run the install again."
)


def _marker() -> Path:
    spec = importlib.util.find_spec("multiworld")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("mwsim: multiworld is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations))) / "init.txt"


def torch_is_patched() -> bool:
    """True when torch.distributed has MultiWorld's per-world state (checked in a fresh process)."""
    probe = "import torch.distributed as d; raise SystemExit(0 if hasattr(d, '_worlds') else 1)"
    return subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0


def main() -> int:
    marker = _marker()
    configured = marker.read_text().strip() == "true"
    if configured and torch_is_patched():
        print("mwsim: multiworld is configured (torch is patched)")
        return 0
    if shutil.which("patch") is None:
        print(PATCH_MISSING, file=sys.stderr)
        return 1
    if configured:
        # An earlier first import ran without `patch` and marked itself done: redo it.
        marker.write_text("false")
    first = subprocess.run(
        [sys.executable, "-c", "import multiworld"], capture_output=True, text=True, check=False
    )
    if not torch_is_patched():
        print(
            "mwsim: multiworld's one-time step did not patch torch "
            f"(exit {first.returncode}):\n{first.stdout}{first.stderr}",
            file=sys.stderr,
        )
        return 1
    print("mwsim: multiworld configured: torch patched once")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
