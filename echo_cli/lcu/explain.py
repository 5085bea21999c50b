"""What `echo-cli render --explain` prints: the emotion used for each avatar turn (and where
it came from) and the user's behaviour summaries the LCU read.

    explanation = explain(turns, emotions, windows)     # plain data (also for --json)
    print(format_explanation(explanation))
"""
from __future__ import annotations

from typing import Sequence

from echo_cli.schema import Turn


def merge_windows(windows: Sequence) -> list[dict]:
    """Consecutive behaviour windows with the same sentence → one span."""
    spans: list[dict] = []
    for w in windows:
        if spans and spans[-1]["text"] == w.text and abs(spans[-1]["end"] - w.t0) < 1e-6:
            spans[-1]["end"] = w.t1
        else:
            spans.append({"start": round(w.t0, 2), "end": w.t1, "text": w.text, "source": w.source})
    for s in spans:
        s["end"] = round(s["end"], 2)
    return spans


def explain(turns: Sequence[Turn], emotions: Sequence, windows: Sequence | None = None) -> dict:
    """turns: the dialogue's turns; emotions: lau.TurnEmotion list; windows: hbcu.BehaviourWindow list."""
    from echo_cli.lcu.hbcu import summarize

    out_turns = []
    for e in emotions:
        t = turns[e.turn_index]
        out_turns.append({"turn": e.turn_index, "speaker": t.speaker, "start": t.start, "end": t.end,
                          "text": t.text, "emotion": e.text, "category": e.category, "source": e.source})
    res = {"avatar_turns": out_turns}
    if windows is not None:
        res["user_behaviour"] = merge_windows(windows)
        res["user_behaviour_fractions"] = {k: round(v, 3) for k, v in summarize(windows).items()}
    return res


def _clip(text: str, n: int = 72) -> str:
    """One screen line per turn: a long turn's text is cut (the --json payload keeps it whole)."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 1].rstrip() + "…"


def format_explanation(ex: dict) -> str:
    lines = ["Avatar emotion per turn (LAU):"]
    if not ex["avatar_turns"]:
        lines.append("  (no avatar turns)")
    for t in ex["avatar_turns"]:
        said = f' "{_clip(t["text"])}"' if t.get("text") else ""
        lines.append(f'  turn {t["turn"]} {t["start"]:.1f}-{t["end"]:.1f} s{said}: {_clip(t["emotion"])} '
                     f'[{t["source"]}]')
    if "user_behaviour" in ex:
        lines.append("User behaviour (HBCU):")
        if not ex["user_behaviour"]:
            lines.append("  (no user in view)")
        for s in ex["user_behaviour"]:
            lines.append(f'  {s["start"]:.1f}-{s["end"]:.1f} s: {s["text"]}')
        fr = ", ".join(f"{k} {v:.0%}" for k, v in ex["user_behaviour_fractions"].items() if v > 0)
        if fr:
            lines.append(f"  overall: {fr}")
    return "\n".join(lines)
