"""Start-up costs a user waits for: wall time of `synthaix build` for a 1,000-row sampler
config (with a Prefect server already running, and with the temporary one), of `synthaix
validate` and of `synthaix preview --rows 20`. Each command runs in its own process, as a user
runs it; the figure is the median of --runs, after one run that is not counted: Python's
bytecode caches are then written, as on a user's machine after the first command (a
PYTHONDONTWRITEBYTECODE in the environment is dropped: with it, every start compiles the
package's source again, about 0.3 s here). Run:

    python benchmarks/small_build.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = """
name: small
rows: 1000
seed: 1
columns:
  - {name: id, type: sequence}
  - {name: first_name, type: person.first_name}
  - {name: last_name, type: person.last_name}
  - {name: age, type: integer, min: 18, max: 90}
  - {name: city, type: category, values: [Berlin, Paris, Madrid]}
  - {name: joined, type: date, start: 2020-01-01, end: 2025-12-31}
"""


def wall(command: list[str], env: dict[str, str], runs: int) -> float:
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run = partial(subprocess.run, command, env=env, check=True, capture_output=True)
    run()  # writes the bytecode caches
    return statistics.median(timeit.repeat(run, number=1, repeat=runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "synthaix.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "small.yaml"
        config.write_text(CONFIG)
        validate = [*cli, "validate", str(config)]
        preview = [*cli, "preview", str(config), "--rows", "20"]
        build = [*cli, "build", str(config), "--out", f"{tmp}/out"]
        plain = {**os.environ, "PREFECT_API_URL": ""}
        figures = {  # name: (seconds, target)
            "validate": (wall(validate, plain, args.runs), 0.8),
            "preview --rows 20": (wall(preview, plain, args.runs), 0.8),
            "build, temporary server": (wall(build, plain, args.runs), 8),
        }
        from flows.local_server import prefect_api

        with prefect_api() as server:
            assert server is not None or os.environ.get("PREFECT_API_URL")
            from prefect.settings import PREFECT_API_URL

            running = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
            figures["build, server running"] = (wall(build, running, args.runs), 3)
    print(f"median of {args.runs} runs, {os.cpu_count()} cores")
    for name, (seconds, target) in figures.items():
        print(f"{name:26} {seconds:5.2f} s   (target <= {target} s)")


if __name__ == "__main__":
    main()
