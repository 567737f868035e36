"""A run record's gate, drift and promotion outcome as short lines, for every front end to render."""

from __future__ import annotations

from typing import Any


def outcome_lines(record: dict[str, Any]) -> list[tuple[str, str]]:
    """``[(level, text)]`` with level ``ok``, ``bad`` or ``warn``; empty when the run had no gates, drift
    checks or promotion."""
    lines = []
    gate = record.get("gate") or {}
    if gate.get("status") in ("passed", "failed"):
        lines.append(("ok" if gate["status"] == "passed" else "bad", f"gate {gate['status']}: {gate['reason']}"))
    drift = record.get("drift")
    if drift:
        lines.append(("bad", f"drifted: {drift['reason']}") if drift["drifted"] else ("ok", f"no drift: {drift['reason']}"))
    promotion = record.get("promotion")
    if promotion:
        what = f"{promotion['model']} v{promotion['version']}" if promotion.get("model") else "no model"
        verdict = "promoted to" if promotion["moved"] else "not promoted to"
        lines.append(("ok" if promotion["moved"] else "warn",
                      f"{what} {verdict} {promotion['alias']}: {promotion['reason']}"))
    return lines
