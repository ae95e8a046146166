"""The manifest of a multi-table build: the dataset's facts, and each table's own manifest
(the single-table Manifest, also stored in that table's last Parquet part)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, computed_field

from synthaix.build.manifest import (
    MANIFEST_VERSION,
    SLOTS_KEPT,
    Manifest,
    cost_lines,
    redact,
    resume_lines,
    versions,
    yaml_ready,
)
from synthaix.errors import OutputError
from synthaix.llm.stats import LlmStats, usd
from synthaix.relational.config import RelationalConfig


class DatasetManifest(BaseModel):
    manifest_version: Literal[2] = MANIFEST_VERSION
    _unchanged: str | None = PrivateAttr(default=None)  # as Manifest's
    kind: Literal["tables"] = "tables"
    dataset: str
    build_id: str
    created_at: str
    mode: str
    seed: int
    config_hash: str
    config: dict[str, Any] = Field(description="The config as built, secrets removed.")
    config_yaml: str
    versions: dict[str, str] = Field(default_factory=dict)
    order: list[str] = Field(description="Tables in build order (parents first).")
    tables: dict[str, Manifest]
    seconds: dict[str, float] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    slots: dict[str, str] = Field(
        default_factory=dict,
        description="The append builds made at a set as_of (a schedule's slot), the latest "
        f"{SLOTS_KEPT:,}: config hash@as_of -> build id. A retry or rerun of one appends nothing.",
    )

    @property
    def rows(self) -> dict[str, int]:
        """Rows of each table now (after an append: old and new)."""
        return {name: m.rows.total for name, m in self.tables.items()}

    @property
    def delivered(self) -> int:
        return sum(m.rows.delivered for m in self.tables.values())

    # The dataset's totals, from its tables' manifests: written to manifest.json for readers
    # of the file, computed again (never read back) when a manifest is parsed.
    @computed_field(description="What this attempt spent on the LLM, all tables.")
    @property
    def llm(self) -> LlmStats:
        return sum((m.llm for m in self.tables.values()), LlmStats())

    @computed_field(
        description="What this attempt and the interrupted ones before it spent, all tables."
    )
    @property
    def llm_total(self) -> LlmStats:
        return sum((m.llm_total for m in self.tables.values()), LlmStats())

    @computed_field(description="What this attempt spent on embeddings, all tables.")
    @property
    def embeddings(self) -> LlmStats:
        return sum((m.embeddings for m in self.tables.values()), LlmStats())

    @computed_field(description="Chunks read back from ledgers, all tables.")
    @property
    def resumed_chunks(self) -> int:
        return sum(m.resumed_chunks for m in self.tables.values())

    @computed_field(description="Rows those chunks held, all tables.")
    @property
    def resumed_rows(self) -> int:
        return sum(m.resumed_rows for m in self.tables.values())

    @computed_field(
        description="Build ids of the interrupted attempts whose spending llm_total includes."
    )
    @property
    def earlier_attempts(self) -> list[str]:
        return sorted({b for m in self.tables.values() for b in m.earlier_attempts})

    def dataset_config(self) -> RelationalConfig:
        data = yaml.safe_load(self.config_yaml)
        try:
            return RelationalConfig.model_validate(data)
        except ValidationError:
            try:  # by earlier versions: `params` keys of a true/false or number `by` as text
                return RelationalConfig.model_validate(_typed_params(data))
            except ValidationError:
                pass
            raise

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> DatasetManifest:
        try:
            return cls.model_validate_json(text)
        except ValueError as exc:
            raise OutputError(f"{where}: not a SynthAIx multi-table manifest: {exc}") from exc


def relational_hash(config: RelationalConfig, secrets: list[str]) -> str:
    dumped = redact(config.model_dump(mode="json", by_alias=True), secrets)
    return "sha256:" + hashlib.sha256(json.dumps(dumped, sort_keys=True).encode()).hexdigest()


def new_dataset_manifest(
    config: RelationalConfig, build_id: str, secrets: list[str], **fields: Any
) -> DatasetManifest:
    dumped = redact(config.model_dump(mode="json", by_alias=True), secrets)
    return DatasetManifest(
        dataset=config.name,
        build_id=build_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        mode=config.mode,
        seed=config.seed,
        config_hash=relational_hash(config, secrets),
        config=dumped,
        # As written: `params` keys of a true/false or number `by` column stay what they are.
        config_yaml=yaml.safe_dump(
            redact(yaml_ready(config.model_dump(by_alias=True)), secrets),
            sort_keys=False,
            allow_unicode=True,
        ),
        versions=versions(),
        **fields,
    )


def _typed_params(value: Any) -> Any:
    """`value` with each `params` mapping's true/false and number keys typed again."""
    if isinstance(value, list):
        return [_typed_params(v) for v in value]
    if not isinstance(value, dict):
        return value
    found = {k: _typed_params(v) for k, v in value.items()}
    params = found.get("params")
    if isinstance(params, dict):
        found["params"] = {_typed_key(k): v for k, v in params.items()}
    return found


_PLAIN = re.compile(r"true|false|-?(0|[1-9]\d*)(\.\d+)?")  # not "010": YAML reads it octal


def _typed_key(key: Any) -> Any:
    """'true' and '3' as YAML wrote them (True, 3); other text stays text."""
    return yaml.safe_load(key) if isinstance(key, str) and _PLAIN.fullmatch(key) else key


def is_dataset_manifest(text: str) -> bool:
    try:
        return json.loads(text).get("kind") == "tables"
    except (ValueError, AttributeError):
        return False


def read_dataset_manifest(output_dir: Path) -> DatasetManifest:
    path = output_dir / "manifest.json"
    return DatasetManifest.parse(path.read_text(encoding="utf-8"), str(path))


def summary_markdown(manifest: DatasetManifest) -> str:
    """The build in a few lines: every table's rows, what was redrawn, what the LLM cost."""
    lines = [
        f"# {manifest.dataset}: {manifest.delivered:,} rows in {len(manifest.tables)} tables",
        "",
        f"Build `{manifest.build_id}` ({manifest.mode}, seed {manifest.seed}) in "
        f"{manifest.seconds.get('total', 0):.1f} s.",
        "",
    ]
    resumed = bool(manifest.resumed_chunks or manifest.earlier_attempts)
    if not resumed:
        lines += [
            "| table | rows delivered | rows now | redrawn | llm requests | llm cost |",
            "|---|---:|---:|---:|---:|---:|",
        ]
    else:  # what came from the ledgers, and this attempt's cost / all attempts'
        lines += [
            "| table | rows delivered | rows now | redrawn | resumed chunks (rows) "
            "| llm requests (this attempt / all) | llm cost (this attempt / all) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
    for name in manifest.order:
        table = manifest.tables[name]
        llm, total, rows = table.llm, table.llm_total, table.rows
        row = f"| {name} | {rows.delivered:,} | {rows.total:,} | {table.dropped.total:,} |"
        if not resumed:
            row += f" {llm.requests:,} | {usd(llm, hint=False)} |"
        else:
            row += (
                f" {table.resumed_chunks:,} ({table.resumed_rows:,}) | {llm.requests:,} / "
                f"{total.requests:,} | {usd(llm, hint=False)} / {usd(total, hint=False)} |"
            )
        lines.append(row)
    lines.append("")
    lines += [f"- {k}: {v}" for k, v in resume_lines(manifest)]
    if manifest.llm_total.requests or manifest.embeddings.requests:
        lines += [f"- {k}: {v}" for k, v in cost_lines(manifest)]
    lines += [f"- {kind}: `{path}`" for kind, path in manifest.outputs.items()]
    return "\n".join(lines) + "\n"
