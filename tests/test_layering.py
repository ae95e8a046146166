"""The core library never imports Prefect: it stays usable and testable on its own."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_without_prefect() -> None:
    code = (
        "import sys\n"
        "import synthaix, synthaix.cli, synthaix.sink, synthaix.assemble, synthaix.generate\n"
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
