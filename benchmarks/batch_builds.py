"""What a batch saves: 5 example configs that need no LLM (the first 5 of configs/*.yaml without
llm columns), --rows each, built by one `synthaix build A B C D E` (one Prefect session: one
temporary server start, one flow run each) and by 5 separate `synthaix build` processes (a
temporary server each). Both with no PREFECT_API_URL, as a user without a server runs them,
with a fresh PREFECT_HOME and fresh output folders. Prints both wall times and the ratio. Run:

    python benchmarks/batch_builds.py [--rows 20000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sampler_configs(count: int) -> list[Path]:
    from synthaix.columns.llm import LlmColumn
    from synthaix.config import load_config
    from synthaix.relational.config import RelationalConfig, llm_tables

    def uses_llm(config) -> bool:
        if isinstance(config, RelationalConfig):
            return bool(llm_tables(config))
        return any(isinstance(c, LlmColumn) for c in config.columns)

    chosen = [p for p in sorted((ROOT / "configs").glob("*.yaml")) if not uses_llm(load_config(p))]
    assert len(chosen) >= count, f"only {len(chosen)} example configs need no LLM"
    return chosen[:count]


def timed(command: list[str], workdir: Path) -> tuple[float, str]:
    """Wall time of one CLI process run in `workdir`, so the configs' relative output folders
    (out/<name>) land there; its stdout."""
    env = {**os.environ, "PREFECT_HOME": str(workdir / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return seconds, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--configs", type=int, default=5)
    args = parser.parse_args()
    configs = sampler_configs(args.configs)
    build = [sys.executable, "-m", "synthaix.cli", "build"]
    rows = ["--rows", str(args.rows)]
    with tempfile.TemporaryDirectory() as batch_dir, tempfile.TemporaryDirectory() as one_dir:
        batch, summary = timed([*build, *map(str, configs), *rows], Path(batch_dir))
        separate = sum(timed([*build, str(c), *rows], Path(one_dir))[0] for c in configs)
    print(f"{len(configs)} configs, {args.rows:,} rows each, {os.cpu_count()} cores:")
    print(", ".join(c.name for c in configs))
    print(summary.rstrip())
    print(f"one batch:              {batch:6.1f} s")
    print(f"{len(configs)} separate processes: {separate:6.1f} s")
    print(f"separate / batch:       {separate / batch:6.2f}x")


if __name__ == "__main__":
    main()
