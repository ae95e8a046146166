"""manifest.json: what a build produced, from what, at what cost. No secrets, ever."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from synthaix.config import DatasetConfig
from synthaix.sink import MANIFEST_KEY
from synthaix.summary import BuildSummary

__all__ = ["BUILD_KEY", "MANIFEST_KEY", "build_manifest", "read_manifest", "summary_markdown"]

BUILD_KEY = b"synthaix.build"
_PACKAGES = ("synthaix", "pyarrow", "duckdb", "numpy", "faker", "openai", "pydantic", "prefect")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def config_hash(config: DatasetConfig) -> str:
    """Hash of the config as validated (defaults filled in) and redacted, so equal configs hash
    equal and the hash of the manifest's own `config` matches."""
    dumped = redact(config.model_dump(mode="json", by_alias=True), secrets_of(config))
    canonical = json.dumps(dumped, sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def versions() -> dict[str, str]:
    found = {}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def redact(value: Any, secrets: list[str]) -> Any:
    """Remove credentials: known secret values anywhere, and user:password@ in URLs."""
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return _URL_USERINFO.sub("***@", value)
    return value


def secrets_of(config: DatasetConfig) -> list[str]:
    key = os.environ.get(config.provider.api_key_env, "")
    return [key] if len(key) >= 4 else []


def build_manifest(
    config: DatasetConfig,
    summary: BuildSummary,
    build_id: str,
    dedupe: dict[str, Any] | None = None,
) -> dict[str, Any]:
    llm = summary.llm
    dropped = summary.dropped_duplicates + summary.dropped_exact + summary.dropped_near
    manifest = {
        "dataset": config.name,
        "build_id": build_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": config.mode,
        "seed": config.seed,
        "config_hash": config_hash(config),
        "config": config.model_dump(mode="json", by_alias=True),
        "versions": versions(),
        "rows": {
            "delivered": summary.rows,
            "total": summary.total_rows,
            "generated": summary.generated_rows,
            # generated rows beyond what was needed (the last chunk's overshoot), not dropped
            "unused": summary.generated_rows - summary.rows - dropped,
            "next_row": summary.next_row,
        },
        "dropped": {
            "invalid": llm.rejected_rows.get("gave_up", 0),
            "unique_value": summary.dropped_duplicates,
            "exact_duplicate": summary.dropped_exact,
            "near_duplicate": summary.dropped_near,
        },
        "dedupe": dedupe or {},
        "chunks": summary.chunks,
        "fill_rounds": summary.fill_rounds,
        "llm": {
            "requests": llm.requests,
            "retries": dict(llm.retries),
            "rejected_rows": dict(llm.rejected_rows),
            "prompt_tokens": llm.prompt_tokens,
            "completion_tokens": llm.completion_tokens,
            "cost_usd": round(llm.cost_usd, 6),
        },
        "seconds": summary.stage_seconds,
        "outputs": summary.outputs,
    }
    return redact(manifest, secrets_of(config))


def read_manifest(output_dir: Path) -> dict[str, Any]:
    return json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))


def next_row(previous: dict[str, Any], existing_rows: int, mode: str) -> int:
    """Where a build's row numbers (and so its seeds) start: 0 for overwrite (same config and
    seed, same data), and for append after every row the earlier builds generated, delivered
    or not, so no candidate is ever generated twice."""
    if mode != "append":
        return 0
    recorded = previous.get("rows", {}).get("next_row") if previous else None
    return max(int(recorded or 0), existing_rows)


def summary_markdown(manifest: dict[str, Any]) -> str:
    """The build summary as Markdown (Prefect artifact, top of the HTML report)."""
    rows, dropped, llm = manifest["rows"], manifest["dropped"], manifest["llm"]
    lines = [
        f"# {manifest['dataset']}: {rows['delivered']:,} rows",
        "",
        "| | |",
        "|---|---|",
        f"| mode | {manifest['mode']} (total now {rows['total']:,} rows) |",
        f"| seed / config | {manifest['seed']} / `{manifest['config_hash'][:19]}` |",
        f"| generated | {rows['generated']:,} rows in {manifest['chunks']} chunks |",
        f"| dropped | invalid {dropped['invalid']:,}, repeated unique values "
        f"{dropped.get('unique_value', 0):,}, exact duplicates {dropped['exact_duplicate']:,}, "
        f"near duplicates {dropped['near_duplicate']:,} |",
    ]
    if llm["requests"]:
        tokens = llm["prompt_tokens"] + llm["completion_tokens"]
        lines += [
            f"| LLM | {llm['requests']:,} requests, {tokens:,} tokens, ${llm['cost_usd']:.4f} |",
            f"| retries | {_counts(llm['retries'])} |",
            f"| rejected rows | {_counts(llm['rejected_rows'])} |",
        ]
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in manifest["seconds"].items())
    lines.append(f"| time | {seconds} |")
    lines += [f"| {kind} | `{path}` |" for kind, path in manifest["outputs"].items()]
    return "\n".join(lines) + "\n"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda i: -i[1])) or "none"
