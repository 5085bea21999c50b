"""The bench history: what each run measured, and how it compares with the run before.

Every `echo-cli bench TARGET` appends its whole record to a JSON-lines file (bench.common).
Here each record is reduced to its headline figures (frames/s, real-time factors, ratios to
the encoder floor, ms per frame), each with the direction that is better, so that

    echo-cli bench history [TARGET] [--last N]

lists past runs, and every bench run says how it compares with the previous run of the same
target on the same kind of machine (a slower figure beyond REGRESSION is called a regression;
wall-clock figures move with the machine's load, which each line shows beside them).
"""
from __future__ import annotations

import json
from pathlib import Path

REGRESSION = 0.10       # 10 % worse than the previous run: worth a look (loads differ by more)


def headline(record: dict) -> dict[str, tuple[float, str]]:
    """{figure name: (value, "higher" | "lower" is better)} of one bench record."""
    target, rows = record.get("target", ""), record.get("rows") or []
    out: dict[str, tuple[float, str]] = {}
    if target == "generate":
        for r in rows:
            who = "user" if r.get("user_ctx") else "no user"
            out[f"{r.get('device')} {r.get('threads')}t {r.get('backend')} {who} frames/s"] = (r.get("fps"), "higher")
    elif target == "render":
        for r in rows:
            out[f"{r.get('size')} px (render+encode)/floor"] = (r.get("ratio"), "lower")
    elif target.startswith("end-to-end"):
        for r in rows:
            if r.get("ok"):
                out[f"{r.get('run')} RTF"] = (r.get("rtf"), "lower")
    elif target == "batch":
        for r in rows:
            out[f"{r.get('workers')} worker(s) RTF"] = (r.get("real_time_factor"), "lower")
    elif target == "preprocess":
        s = record.get("summary") or {}
        out["face track ms/frame (512 px)"] = (s.get("face_ms_per_frame_512"), "lower")
        # the other parts a run may measure (--set parts=...): each its own figure, or such a
        # run was "the first run" forever (no face figure to compare)
        for backend, rtf in (s.get("transcription_rtf") or {}).items():
            out[f"transcription RTF ({backend})"] = (rtf, "lower")
        out["cache speed-up"] = (s.get("cache_speedup"), "higher")
    return {k: (float(v), d) for k, (v, d) in out.items() if isinstance(v, (int, float))}


def read(path: Path) -> list[dict]:
    """The records of a history file, oldest first; a damaged line (a run killed mid-write,
    an edit) is skipped, not fatal."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as e:        # a folder, no permission
        from echo_cli.errors import InputError

        raise InputError(f"cannot read the bench history: {e.strerror or e}", path=path,
                         fix="give --history the .jsonl file a bench wrote") from None
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and r.get("target"):
            records.append(r)
    return records


def _same_machine(a: dict, b: dict) -> bool:
    ma, mb = a.get("machine") or {}, b.get("machine") or {}
    return ma.get("cpu") == mb.get("cpu") and ma.get("affinity") == mb.get("affinity")


def previous(record: dict, records: list[dict]) -> dict | None:
    """The latest earlier record of the same target on the same kind of machine that measured
    at least one of the same figures (a run with other --set options measures other things)."""
    mine = set(headline(record))
    for r in reversed(records):
        if r is record or r.get("time") == record.get("time") and r.get("command") == record.get("command"):
            continue
        if r.get("target") == record.get("target") and _same_machine(r, record) and mine & set(headline(r)):
            return r
    return None


def compare(record: dict, before: dict | None) -> list[dict]:
    """Per headline figure: value, previous value, relative change, and whether it is worse
    than the previous run by more than REGRESSION."""
    if before is None:
        return []
    old = headline(before)
    rows = []
    for name, (value, better) in headline(record).items():
        if name not in old or not old[name][0]:
            continue
        was = old[name][0]
        change = value / was - 1.0
        worse = change < -REGRESSION if better == "higher" else change > REGRESSION
        rows.append({"figure": name, "value": value, "previous": was, "change": round(change, 4),
                     "better": better, "regression": bool(worse)})
    return rows


def describe(record: dict, before: dict | None, rows: list[dict]) -> str:
    """Lines for the terminal after a run."""
    if before is None:
        return "history: first run of this target on this machine"
    m = before.get("machine") or {}
    lines = [f"history: against the run of {before.get('time', '?')} (git {m.get('git', '?')}, "
             f"load {m.get('load_1min', '?')}; now {(record.get('machine') or {}).get('load_1min', '?')}):"]
    for r in rows:
        flag = "  REGRESSION" if r["regression"] else ""
        lines.append(f"  {r['figure']}: {r['value']:g} (was {r['previous']:g}, {r['change']:+.0%}){flag}")
    return "\n".join(lines)


def table(records: list[dict]) -> str:
    """One line per run: when, target, git, load, headline figures."""
    out = []
    for r in records:
        m = r.get("machine") or {}
        figs = ", ".join(f"{k} {v:g}" for k, (v, _) in headline(r).items()) or "-"
        out.append(f"{r.get('time', '?')}  {r.get('target')}  git {m.get('git', '?')}  load {m.get('load_1min', '?')}  {figs}")
    return "\n".join(out)
