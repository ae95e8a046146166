"""What a build produced, for the CLI summary and the flow's return value."""

from __future__ import annotations

from pydantic import BaseModel, Field

from synthaix.llm.stats import LlmStats


class BuildSummary(BaseModel):
    dataset: str
    mode: str
    seed: int
    rows: int
    total_rows: int
    generated_rows: int
    dropped_duplicates: int  # rows repeating a value of a `unique` column
    dropped_exact: int = 0  # exact duplicates of a row (dedupe key)
    dropped_near: int = 0  # near duplicates (dedupe text)
    next_row: int = 0  # the first row number the next append build generates
    chunks: int
    fill_rounds: int
    seconds: float
    outputs: dict[str, str]
    llm: LlmStats = Field(default_factory=LlmStats)
    stage_seconds: dict[str, float] = Field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0
