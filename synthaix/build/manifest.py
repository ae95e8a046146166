"""The manifest: what a build produced, from what, at what cost. One typed, versioned model is
the flow's return value, manifest.json, the Parquet key-value metadata, and what `append` and
the dedupe table read back. No secrets, ever."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic_core import to_jsonable_python

from synthaix import progress
from synthaix.config import DatasetConfig
from synthaix.errors import OutputError, masked_urls
from synthaix.llm.stats import EMBEDDING_PRICE, LlmStats, spend

log = logging.getLogger("synthaix")

MANIFEST_VERSION = 2
_PACKAGES = ("synthaix", "pyarrow", "duckdb", "numpy", "faker", "openai", "pydantic", "prefect")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RowCounts(_Section):
    delivered: int = Field(description="Rows this build added (or wrote, for overwrite).")
    total: int = Field(description="Rows the dataset holds after this build.")
    generated: int = Field(description="Candidate rows generated, dropped ones included.")
    unused: int = Field(0, description="Generated beyond what was needed (last chunk's overshoot).")
    next_row: int = Field(0, description="First row number the next append build generates.")


class Dropped(_Section):
    invalid: int = Field(0, description="Rows the LLM never returned valid values for.")
    unique_value: int = Field(0, description="Rows repeating a value of a `unique` column.")
    exact_duplicate: int = Field(0, description="Rows whose dedupe key was seen before.")
    near_duplicate: int = Field(0, description="Rows whose text was near a stored row's.")
    constraint: dict[str, int] = Field(
        default_factory=dict,
        description="Generated rows each constraint dropped (replaced); a row breaking two is "
        "counted by each.",
    )
    in_chunks: int = Field(
        0,
        description="Rows left out where they were generated: breaking a constraint or with no "
        "valid LLM value (each row once).",
    )

    @property
    def total(self) -> int:
        """Every row dropped (and replaced), whatever the cause, each once."""
        return self.unique_value + self.exact_duplicate + self.near_duplicate + self.in_chunks

    @property
    def broke_constraints(self) -> int:
        """Rows dropped for breaking constraints, each once (`constraint` counts a row that
        breaks two in each)."""
        return max(0, self.in_chunks - self.invalid) if self.constraint else 0

    @property
    def without_value(self) -> int:
        """Rows left out in their chunk with no valid LLM value: `invalid`, and with no
        constraint every row left out there (a resumed chunk's count no stats hold)."""
        return self.in_chunks - self.broke_constraints if self.in_chunks else self.invalid

    def causes(self) -> str:
        """`1,234: exact duplicates 1,000, broke a constraint 234`: each row under one cause,
        so they add up to the total."""
        causes = {
            "invalid": self.without_value,
            "repeated unique values": self.unique_value,
            "exact duplicates": self.exact_duplicate,
            "near duplicates": self.near_duplicate,
            "broke a constraint": self.broke_constraints,
        }
        said = ", ".join(f"{k} {v:,}" for k, v in causes.items() if v)
        return f"{self.total:,}: {said}" if said else "none"

    def by_constraint(self) -> str:
        """`name count, ...`, saying that a row may count under several."""
        said = ", ".join(f"{k} {v:,}" for k, v in self.constraint.items())
        return said + (" (a row breaking two counts in each)" if len(self.constraint) > 1 else "")


class DedupeTable(_Section):
    """Where the dataset's dedupe state is: a LanceDB table and the version this build left
    (its tag), or, for exact keys only, the key files under `uri` (`files`)."""

    uri: str
    table: str
    tag: str = ""
    files: list[str] = Field(default_factory=list)
    rows: int
    indexed: bool = False
    unindexed_builds: list[str] = Field(default_factory=list)
    signature: dict[str, Any] = Field(default_factory=dict)


SLOTS_KEPT = 1000  # append slots a manifest remembers (an hourly schedule's six weeks)


class Manifest(_Section):
    manifest_version: Literal[2] = MANIFEST_VERSION
    _unchanged: str | None = PrivateAttr(default=None)  # a repeated slot: why nothing was built
    dataset: str
    build_id: str
    created_at: str
    mode: str
    seed: int
    config_hash: str
    config: dict[str, Any] = Field(description="The config as built, secrets removed.")
    config_yaml: str | None = Field(
        None,
        description="The same config as YAML, which keeps what JSON cannot: mapping keys that "
        "are numbers or booleans (category weights, parameters by a number column).",
    )
    versions: dict[str, str] = Field(default_factory=dict)
    rows: RowCounts
    dropped: Dropped = Field(default_factory=Dropped)
    dedupe: DedupeTable | None = None
    chunks: int = 0
    resumed_chunks: int = Field(0, description="Chunks read back from an interrupted attempt.")
    resumed_rows: int = Field(0, description="Rows those chunks held (candidates, before dedupe).")
    fill_rounds: int = 0
    llm: LlmStats = Field(default_factory=LlmStats, description="What this attempt spent.")
    llm_total: LlmStats = Field(
        default_factory=LlmStats,
        description="What this attempt and the interrupted attempts before it spent (as their "
        "ledger recorded it: every chunk that came back). Equal to `llm` when nothing was "
        "resumed, and in a manifest written before this field.",
    )
    earlier_attempts: list[str] = Field(
        default_factory=list,
        description="Build ids of the interrupted attempts whose spending `llm_total` includes.",
    )
    embeddings: LlmStats = Field(
        default_factory=LlmStats,
        description="What this attempt's near-duplicate check spent on an embeddings endpoint "
        "(embedder: openai; priced at dedupe.price_per_million).",
    )
    seconds: dict[str, float] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    slots: dict[str, str] = Field(
        default_factory=dict,
        description="The append builds made at a set as_of (a schedule's slot), the latest "
        f"{SLOTS_KEPT:,}: config hash@as_of -> build id. A retry or rerun of one appends nothing.",
    )
    as_of_span: tuple[dt.datetime, dt.datetime] | None = Field(
        default=None,
        description="The earliest and latest as_of of the builds whose rows the output holds "
        "(appends): the report checks relative times over that span. None: this build's "
        "as_of alone, or no as_of.",
    )

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """A 0.1 manifest has no version, an empty dict for no dedupe table, and LLM figures
        without rows_filled: read it as version 2. Fields added since have defaults, and a
        manifest without `llm_total` (or built without it) spent `llm` in all."""
        if isinstance(data, dict) and "manifest_version" not in data:
            data = {**data, "manifest_version": MANIFEST_VERSION}
            if data.get("dedupe") == {}:
                data["dedupe"] = None
        if isinstance(data, dict) and "llm_total" not in data:  # no earlier attempts known
            llm = data.get("llm")
            total = llm.model_copy(deep=True) if isinstance(llm, LlmStats) else llm
            data = {**data, "llm_total": {} if total is None else total}
        return data

    def dataset_config(self) -> DatasetConfig:
        """The config this build was made from, validated again."""
        from synthaix.config import parse_config

        data = yaml.safe_load(self.config_yaml) if self.config_yaml else self.config
        return parse_config(data, origin=f"the config of build {self.build_id}")

    @property
    def build_seconds(self) -> float:
        return sum(self.seconds.values())

    @property
    def rows_per_second(self) -> float:
        seconds = self.build_seconds
        return self.rows.delivered / seconds if seconds else 0.0

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> Manifest:
        """The manifest in `text`, or an OutputError saying why it cannot be used."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg']}"
                for e in exc.errors()[:3]
            )
            raise OutputError(
                f"the manifest of {where} cannot be read ({problems})",
                hint="it was edited, or written by another program or SynthAIx version: "
                "rebuild with mode: overwrite (an append still reads the copy of the manifest "
                "kept in the last Parquet part, when that one reads)",
            ) from None


def read_manifest(output_dir: Path) -> Manifest:
    path = output_dir / "manifest.json"
    return Manifest.parse(path.read_bytes(), str(path))


def new_manifest(config: DatasetConfig, build_id: str, **fields: Any) -> Manifest:
    """The manifest of a build of `config`, with its identity, config and versions filled in."""
    manifest = Manifest(
        dataset=config.name,
        build_id=build_id,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        mode=config.mode,
        seed=config.seed,
        config_hash=config_hash(config),
        config=config.model_dump(mode="json", by_alias=True),
        config_yaml=yaml.safe_dump(yaml_ready(config.model_dump(by_alias=True)), sort_keys=False),
        versions=versions(),
        **fields,
    )
    return Manifest.model_validate(redact(manifest.model_dump(mode="json"), secrets_of(config)))


def slot_of(config: Any, fingerprint: str) -> str | None:
    """The key of a deployment run's append slot (the config's hash at the slot's time), or
    None: a build not made for a slot (`synthaix build --as-of` appends what it is asked to),
    an overwrite, or one table of a multi-table dataset (the dataset keeps the slot).
    `config` is a DatasetConfig or a RelationalConfig. The slot's time is in the key as a
    config that uses no relative time has no as_of, yet each slot appends rows of its own."""
    if config.mode != "append" or config._slot is None or getattr(config, "_in_tables", False):
        return None
    return f"{fingerprint}@{config._slot.isoformat()}"


def appended_span(
    as_of: dt.datetime | None, previous: Manifest | None, mode: str
) -> tuple[dt.datetime, dt.datetime] | None:
    """The `as_of_span` of a build's manifest: an append's widens the earlier builds' (their
    span, else the last one's as_of) with its own; None when it would be one instant."""
    if mode != "append" or previous is None:
        return None
    # A manifest written before the span holds its slots' as_of (hash@as_of) at least.
    slots = [] if previous.as_of_span else [_instant(k.rpartition("@")[2]) for k in previous.slots]
    earlier = (*(previous.as_of_span or ()), *slots, _as_of(previous.config))
    seen = [t for t in (*earlier, as_of) if t]
    span = (min(seen), max(seen)) if seen else None
    return span if span is not None and span[0] != span[1] else None


def _as_of(config: dict[str, Any]) -> dt.datetime | None:
    return _instant(config.get("as_of"))


def _instant(value: Any) -> dt.datetime | None:
    """Naive UTC, as every as_of is kept (a slot's key holds its aware time, +00:00)."""
    from synthaix.asof import as_utc

    try:
        return as_utc(dt.datetime.fromisoformat(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def appended_slots(
    slot: str | None, previous: dict[str, str] | None, build_id: str, mode: str
) -> dict[str, str]:
    """The `slots` of a build's manifest: an append's carries the earlier ones on, and adds
    its own (`slot`, from slot_of) when it has one; an overwrite starts again."""
    if mode != "append":
        return {}
    slots = dict(previous or {})
    if slot is not None:
        slots[slot] = build_id
    return dict(list(slots.items())[-SLOTS_KEPT:])


def already_appended(config: Any, slot: str | None, previous: Any) -> Any:
    """The output's manifest, marked unchanged, when it holds this slot's rows already (a
    retry or a rerun of a deployment run, which would append them a second time; said at
    INFO: a retry is routine); else None. `previous`: its manifest."""
    done = previous.slots.get(slot) if slot is not None and previous is not None else None
    if done is None:
        return None
    text = (
        f"{config.name} holds the rows of this config at as_of {config._slot.isoformat()} "
        f"already (appended by build {done}): nothing is appended again"
    )
    log.info(text)
    progress.note(text)
    unchanged = previous.model_copy()
    unchanged._unchanged = text
    return unchanged


def next_row(previous: Manifest | None, existing_rows: int, mode: str) -> int:
    """Where a build's row numbers (and so its seeds) start: 0 for overwrite (same config and
    seed, same data), and for append after every row the earlier builds generated, delivered
    or not, so no candidate is ever generated twice."""
    if mode != "append":
        return 0
    recorded = previous.rows.next_row if previous is not None else 0
    return max(recorded, existing_rows)


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


def yaml_ready(value: Any) -> Any:
    """Python-mode config data that YAML can write, keys left as they are."""
    if isinstance(value, dict):
        return {k: yaml_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [yaml_ready(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool | dt.date):
        return value
    return to_jsonable_python(value)


def redact(value: Any, secrets: list[str]) -> Any:
    """Remove credentials: known secret values anywhere, and user:password@ in URLs."""
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return masked_urls(value)
    return value


def secrets_of(config: DatasetConfig) -> list[str]:
    """The keys the config's provider could send: its environment variable's and, with
    provider.api_key_block, the Prefect Secret block's (cached once the client loaded it)."""
    from synthaix.llm.credentials import known_secrets

    return known_secrets(config.provider)


def summary_markdown(manifest: Manifest) -> str:
    """The build summary as Markdown (Prefect artifact, top of the HTML report)."""
    rows, dropped, llm = manifest.rows, manifest.dropped, manifest.llm
    lines = [
        f"# {manifest.dataset}: {rows.delivered:,} rows",
        "",
        "| | |",
        "|---|---|",
        f"| mode | {manifest.mode} (total now {rows.total:,} rows) |",
        f"| seed / config | {manifest.seed} / `{manifest.config_hash[:19]}` |",
        f"| generated | {rows.generated:,} rows in {manifest.chunks} chunks: delivered, dropped "
        f"(below) or unused ({rows.unused:,}, made beyond the rows needed) |",
        f"| dropped | {dropped.causes()} |",
    ]
    if dropped.constraint:
        lines.append(f"| broke a constraint | {dropped.by_constraint()} |")
    lines += [f"| {k} | {v} |" for k, v in resume_lines(manifest)]
    if llm.requests or manifest.llm_total.requests or manifest.embeddings.requests:
        lines += [f"| {k} | {v} |" for k, v in cost_lines(manifest)]
        lines += [
            f"| pacing | {pacing(llm)} |",
            f"| retries | {_counts(llm.retries)} |",
            f"| rejected rows | {_counts(llm.rejected_rows)} |",
        ]
    seconds = ", ".join(f"{k} {v:.1f} s" for k, v in manifest.seconds.items())
    lines.append(f"| time | {seconds} |")
    lines += [f"| {kind} | `{path}` |" for kind, path in manifest.outputs.items()]
    return "\n".join(lines) + "\n"


def chunks_and_rows(chunks: int, rows: int) -> str:
    """`4 chunks (400 rows)`, `1 chunk (100 rows)`: what a resumed build reused."""
    return f"{chunks:,} chunk{'s' if chunks != 1 else ''} ({rows:,} rows)"


def resume_lines(manifest: Any) -> list[tuple[str, str]]:
    """What a resumed build reused, as (label, text) rows of a summary (none if nothing).
    `manifest`: a Manifest, or a multi-table one (its totals have the same names)."""
    if not manifest.resumed_chunks:
        return []
    reused = chunks_and_rows(manifest.resumed_chunks, manifest.resumed_rows)
    return [("resumed", f"{reused} from the ledger of an interrupted build")]


def cost_lines(manifest: Any) -> list[tuple[str, str]]:
    """The LLM cost as (label, text) rows: one, or this attempt's and all attempts' when
    interrupted attempts spent before it; then the embeddings', if any. `manifest`: as for
    `resume_lines`."""
    llm, total, embeddings = manifest.llm, manifest.llm_total, manifest.embeddings
    more = [("embeddings", spend(embeddings, EMBEDDING_PRICE))] if embeddings.requests else []
    if timed_out := llm.retries.get("timeout", 0):
        more.append(("timed out", f"{timed_out:,} {TIMED_OUT}"))
    if not manifest.earlier_attempts:
        return [("LLM", spend(llm)), *more]
    count = len(manifest.earlier_attempts)
    earlier = f"{count} interrupted attempt{'s' if count > 1 else ''}"
    return [
        ("LLM, this attempt", spend(llm)),
        ("LLM, all attempts", f"{spend(total)} (this one and {earlier} before it)"),
        *more,
    ]


#: A request that timed out was answered too late, not refused: the provider may bill it.
TIMED_OUT = "requests: a provider may bill them, and their tokens are unknown (not in the cost)"


def pacing(llm: LlmStats) -> str:
    """What the provider allowed: observed rates, 429s, time waited, rows per request. Rates
    need answers spread over 10 s at least (two answers 6 ms apart made 20,000 a minute)."""
    if llm.answer_seconds >= 10:
        rates = (
            f"{llm.observed_rpm:,.0f} requests/min, {llm.observed_tpm:,.0f} tokens/min "
            f"(averaged over the {llm.answer_seconds:,.0f} s of answers; a burst may pass a "
            "per-minute limit)"
        )
    else:
        rates = "rates not measured (all answers came within 10 s: too short a span)"
    attempts = llm.requests + sum(llm.retries.values())  # answered, and each failed try
    return (
        f"{rates}; {llm.rate_limited:,} of {attempts:,} attempts answered 429 "
        f"({llm.rate_limited / max(attempts, 1):.1%}); "
        f"{llm.wait_seconds:,.1f} s waited (summed over requests); "
        f"{llm.rows_per_request:.1f} rows a request"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda i: -i[1])) or "none"
