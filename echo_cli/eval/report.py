"""Evaluation results as versioned JSON and as a Markdown table.

JSON schema (`echo-cli.eval`, version 1): one object per evaluated video with the groups
technical / lip_sync / behaviour / conversation / temporal / identity; every key listed in
`FIELDS` is always present, null where the metric does not apply (no reference, no user,
no audio). New metrics may be added within a version; renaming or removing one bumps it.
A report file wraps the results: {"schema", "schema_version", "tool_version", "command",
"results": [...], "summary": {...}}.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

SCHEMA = "echo-cli.eval"
SCHEMA_VERSION = 1

# group -> [(key, short label, direction: "+" higher is better, "-" lower, "0" target = real)]
FIELDS: dict[str, list[tuple[str, str, str]]] = {
    "lip_sync": [
        ("sync_confidence", "sync conf (LSE-C analogue)", "+"),
        ("sync_distance", "sync dist (LSE-D analogue)", "-"),
        ("sync_dist_at_zero", "sync dist at lag 0", "-"),
        ("sync_lag_frames", "sync lag (frames)", "0"),
        ("env_corr", "mouth-envelope corr", "+"),
        ("env_lag_frames", "envelope lag (frames)", "0"),
        ("env_z", "mouth-envelope z", "+"),
        ("mouth_corr_ref", "mouth corr vs ref", "+"),
        ("lve", "LVE / IOD", "-"),
    ],
    "behaviour": [
        ("sid_expression", "SID expression", "+"),
        ("sid_pose", "SID pose", "+"),
        ("var_expression", "Var expression", "+"),
        ("var_pose", "Var pose", "+"),
        ("pcc_user", "PCC vs user", "0"),
        ("pcc_real_user", "PCC real vs user", "0"),
        ("rpcc", "rPCC", "-"),
    ],
    "conversation": [
        ("speaking_fraction", "speaking fraction", "0"),
        ("mouth_ratio", "mouth listen/speak", "-"),
        ("mouth_std_ratio", "mouth std listen/speak (≤ 0.35)", "-"),
        ("reaction_delay_s", "reaction delay (s)", "0"),
        ("follow_rate", "nod/smile 0.2-1.5 s after user event", "+"),
        ("follow_chance", "… same, user events shifted (chance)", "0"),
        ("follow_p", "… p (shifts ≥ observed)", "-"),
    ],
    "temporal": [
        ("jitter", "jitter", "0"),
        ("jitter_lips", "jitter lips", "0"),
        ("jitter_seam", "jitter at seams", "-"),
        ("jitter_inside", "jitter inside chunks", "-"),
        ("jitter_seam_ratio", "seam/inside jitter", "-"),
        ("frozen_fraction", "frozen frames", "-"),
        ("face_lost_fraction", "face lost", "-"),
    ],
    "identity": [
        ("shape_drift", "shape drift / IOD", "0"),
        ("ssim", "SSIM", "+"),
        ("psnr", "PSNR (dB)", "+"),
    ],
    "technical": [
        ("duration_s", "duration (s)", "0"),
        ("av_duration_diff_s", "audio - video (s)", "0"),
        ("duration_diff_ref_s", "video - ref (s)", "0"),
    ],
}


# Metrics that a still image shares with the real clip by construction, so "ceiling vs
# floor" does not apply: both have a face in every frame, the still keeps its face shape
# exactly (no drift is correct), the speaking frames come from the same audio, and the
# durations and codecs are the same file's.
NOT_SEPARATING = {"face_lost_fraction", "shape_drift", "speaking_fraction"}


def clean(o):
    """NaN/inf -> None, numpy scalars -> Python, recursively (JSON stays valid and stable)."""
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        try:
            o = o.item()
        except (ValueError, AttributeError):
            o = o.tolist()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def wrap(results: Sequence[dict], command: str = "", summary: dict | None = None) -> dict:
    from echo_cli import __version__
    return clean({"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "tool_version": __version__,
                  "command": command, "results": list(results), "summary": summary or {}})


def write_json(doc: dict, path: str | Path) -> Path:
    from echo_cli.io_atomic import write_text
    write_text(path, json.dumps(clean(doc), indent=2, sort_keys=False) + "\n")
    return Path(path)


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        text = f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
        return text.lstrip("-") if float(text) == 0 else text       # no "-0.000"
    return str(v)


def markdown_table(results: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows = metrics (with ↑/↓), columns = results (their labels)."""
    cols = list(columns) if columns else [r.get("label", r.get("video", "?")) for r in results]
    arrow = {"+": " ↑", "-": " ↓", "0": ""}
    lines = ["| metric | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for group, fields in FIELDS.items():
        for key, label, d in fields:
            vals = [r.get(group, {}).get(key) for r in results]
            if all(v is None for v in vals):
                continue
            lines.append(f"| {label}{arrow[d]} | " + " | ".join(_fmt(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"


def mean_by_condition(results: Sequence[dict]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{condition: {group: {key: mean over clips}}} for baseline suites."""
    out: dict = {}
    conds = sorted({r.get("condition", "") for r in results}, key=lambda c: (c != "ceiling", c != "still", c))
    for c in conds:
        rs = [r for r in results if r.get("condition", "") == c]
        g_out: dict = {}
        for group, fields in FIELDS.items():
            g_out[group] = {}
            for key, _, _ in fields:
                vals = [r.get(group, {}).get(key) for r in rs]
                vals = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
                g_out[group][key] = round(sum(vals) / len(vals), 5) if vals else None
        out[c] = {"label": f"{c} (mean of {len(rs)})", **g_out}
    return out


def separation(means: dict, floor: str = "still") -> dict[str, dict]:
    """Per metric: does the ceiling (real clip) beat the floor? For metrics with a direction
    (↑/↓) 'separates' means better; for target metrics (jitter, lags: the real value is the
    target, a still face has 0 jitter) it means the two differ by more than 5% of the
    larger magnitude."""
    if "ceiling" not in means or floor not in means:
        return {}
    out = {}
    for group, fields in FIELDS.items():
        for key, _, d in fields:
            if group == "technical" or key in NOT_SEPARATING:
                continue
            a, b = means["ceiling"][group].get(key), means[floor][group].get(key)
            if a is None or b is None:
                continue
            if d == "+":
                sep = a > b
            elif d == "-":
                sep = a < b
            else:
                sep = abs(a - b) > 0.05 * max(abs(a), abs(b), 1e-9)
            out[f"{group}.{key}"] = {"ceiling": a, floor: b, "direction": d, "separates": bool(sep)}
    return out


__all__ = ["SCHEMA", "SCHEMA_VERSION", "FIELDS", "clean", "wrap", "write_json", "markdown_table",
           "mean_by_condition", "separation"]
