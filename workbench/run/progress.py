"""The one progress protocol of a run: a typed record the run writes (``runs.progress`` in DuckDB, and its
``callback``) and the app and CLI read.

Inside a run, the plug-ins report in their own shapes (encoders ``(fraction, message)``, fusion heads ``(epoch,
total, info)``, encoding ``(done, total)``); :class:`workbench.run.runner.RunContext` turns each into a
:class:`Progress`, so nothing outside the run package parses progress by hand.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field, fields
from typing import Any

STAGES = ("load", "fit_encoders", "encode_images", "encode_texts", "train", "score", "artifacts", "metrics")


@dataclass(frozen=True)
class Progress:
    """Where a run stands: its stage (one of :data:`STAGES`), items ``done`` of ``total`` within it, seconds in
    the stage and the estimated seconds left (None until something is done), a plug-in's ``message``, the GPU's
    memory (None on CPU) and ``detail``: stage-specific numbers such as a training epoch's losses. ``queued`` marks
    the record a run is created with, before any stage starts (see :meth:`queued_record`)."""

    stage: str
    done: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    message: str = ""
    gpu: dict[str, float] | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    queued: bool = False

    @classmethod
    def queued_record(cls) -> Progress:
        """What a run holds from its creation until it starts: every run row has a readable record."""
        return cls(stage=STAGES[0], queued=True)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r} is not a run stage; allowed: {list(STAGES)}")
        for name in ("done", "total"):  # plug-ins may count with numpy integers: stored as plain ints
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
            object.__setattr__(self, name, int(value))

    @property
    def stage_index(self) -> int:
        return STAGES.index(self.stage)

    @property
    def n_stages(self) -> int:
        return len(STAGES)

    def fraction(self, status: str = "running") -> float:
        """Share of the whole run done: the finished stages plus the done share of the current one (1 when done)."""
        if status == "done":
            return 1.0
        if self.queued:
            return 0.0
        within = self.done / self.total if self.total else 0.0
        return min(1.0, max(0.0, (self.stage_index + within) / self.n_stages))

    def label(self) -> str:
        """``"5/8 train (3/10)"``: the stage's position, its name and, when counted, the items done; ``"queued"``
        before the run starts."""
        if self.queued:
            return "queued"
        text = f"{self.stage_index + 1}/{self.n_stages} {self.stage}"
        return text + (f" ({self.done}/{self.total})" if self.total else "")

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=float)

    @classmethod
    def from_json(cls, raw: str | dict | None) -> Progress | None:
        """The record stored with a run, or None when there is none or it is unreadable.

        Records written before this protocol (flat JSON with the head's numbers beside the counts) are read too:
        unknown keys become ``detail``; an unknown stage or a malformed count makes the record unreadable."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                return None
        if not isinstance(raw, dict) or raw.get("stage") not in STAGES:
            return None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known and k != "detail"}
        legacy = {k: v for k, v in raw.items() if k not in known and k not in ("stage_index", "n_stages")}
        detail = {**legacy, **(raw.get("detail") or {})}
        try:
            return cls(**values, detail=detail)
        except (TypeError, ValueError):
            return None
