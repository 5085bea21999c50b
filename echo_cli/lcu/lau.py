"""LAU, linguistic affective understanding: dialogue history → per avatar turn emotion → c_emo.

ECHO prompts an LLM with the dialogue history and embeds its emotion description
("… primarily happy and excited") with a text encoder. We keep that contract with three
sources, in priority order:

1. a per-turn `emotion:` from dialogue.yaml always wins (a known category word such as
   `happy` maps to the canonical description used in training; free text is used verbatim);
2. an OpenAI-compatible chat endpoint, only when configured (`LAUConfig.endpoint` or the
   environment variable ECHO_LAU_ENDPOINT); off by default, and on any failure LAU falls
   back to the built-in inference with a warning;
3. the built-in zero-shot inference: MiniLM similarity between the recent dialogue and
   prototype sentences of each emotion, plus a small valence/emotion lexicon with negation,
   the avatar's own words weighted most, then the user's last turn, older turns decaying.

The description is embedded with MiniLM → c_emo (384-d, unit norm), the generator's
`emotion` input.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from echo_cli import log
from echo_cli.schema import Turn

_log = log.get("echo_cli.lcu.lau")

# category -> canonical description (also the text used for emotion targets in stage 2)
EMOTIONS: dict[str, str] = {
    "happy": "primarily happy and cheerful",
    "sad": "primarily sad and subdued",
    "angry": "primarily angry and frustrated",
    "surprised": "primarily surprised and amazed",
    "fearful": "primarily anxious and worried",
    "neutral": "primarily calm and attentive",
}
# second adjective when a runner-up emotion is close: "primarily happy and excited"
_SECONDARY = {"happy": "joyful", "sad": "sympathetic", "angry": "irritated", "surprised": "excited",
              "fearful": "concerned", "neutral": "calm"}

SYNONYMS: dict[str, str] = {
    "happy": "happy", "joy": "happy", "joyful": "happy", "cheerful": "happy", "glad": "happy",
    "excited": "happy", "delighted": "happy", "pleased": "happy", "content": "happy",
    "sad": "sad", "unhappy": "sad", "sorrowful": "sad", "grief": "sad", "melancholy": "sad",
    "down": "sad", "upset": "sad", "depressed": "sad", "sympathetic": "sad",
    "angry": "angry", "mad": "angry", "furious": "angry", "annoyed": "angry", "frustrated": "angry",
    "irritated": "angry",
    "surprised": "surprised", "surprise": "surprised", "amazed": "surprised", "astonished": "surprised",
    "shocked": "surprised",
    "fearful": "fearful", "afraid": "fearful", "scared": "fearful", "anxious": "fearful",
    "worried": "fearful", "nervous": "fearful", "fear": "fearful",
    "neutral": "neutral", "calm": "neutral", "attentive": "neutral", "relaxed": "neutral",
}

# Prototype sentences: what each emotion sounds like in conversation (zero-shot anchors).
PROTOTYPES: dict[str, list[str]] = {
    "happy": ["That is wonderful news, I am so happy for you!", "Congratulations, that's great!",
              "What a lovely, joyful moment.", "I'm delighted, that sounds fantastic."],
    "sad": ["I'm so sorry for your loss.", "That is heartbreaking and very sad.",
            "It hurts to lose someone you love.", "I feel terrible that you are going through this."],
    "angry": ["This is outrageous and unacceptable!", "I am furious about how you were treated.",
              "That makes me so angry.", "How dare they do that to you!"],
    "surprised": ["What? No way, I can't believe it!", "Wow, I did not expect that at all!",
                  "Really? That is so unexpected!", "That's astonishing news."],
    "fearful": ["That sounds frightening, I'm worried about you.", "I'm scared something bad will happen.",
                "That is terrifying, are you safe?", "I feel anxious and nervous about it."],
    "neutral": ["Okay, the meeting is at ten.", "Turn left after two blocks.",
                "It takes about twenty minutes.", "Here is the information you asked for."],
}

# word -> (category, weight); stems match word prefixes ("congratulat" matches "congratulations")
LEXICON: dict[str, tuple[str, float]] = {}
for _cat, _words in {
    "happy": "happy glad great wonderful fantastic lovely love congratulat delight enjoy "
             "excellent amazing beautiful brilliant celebrat fun joy relief thrilled awesome "
             "perfect proud yay well_done healthy good",
    "sad": "sad sorry loss lost died death dead funeral grief cry cried crying miss lonely "
           "heartbreak hurt pain painful terrible tragic gone broke laid_off fired mourn tears",
    "angry": "angry furious outrage unacceptable livid infuriat disgust hate annoy rude "
             "ridiculous cheat lied stole stolen unfair dare mad scam",
    "surprised": "wow really unbelievable believe unexpected surpris amazing incredible guess "
                 "shock astonish whoa suddenly",
    "fearful": "afraid scared scary fear frighten terrif worried worry anxious nervous panic "
               "danger risk unsafe threat storm dread safe",
}.items():
    for _w in _words.split():
        LEXICON[_w.replace("_", " ")] = (_cat, 1.0)
_NEGATIONS = {"not", "no", "never", "n't", "hardly", "without"}


@dataclass(frozen=True)
class LAUConfig:
    endpoint: str | None = None        # OpenAI-compatible base URL (…/v1); None = built-in only
    model: str = "gpt-4o-mini"         # model name sent to the endpoint
    api_key_env: str = "OPENAI_API_KEY"  # environment variable holding the key (never stored)
    timeout_s: float = 20.0
    history_turns: int = 6             # turns of history the inference looks at
    avatar_weight: float = 1.0         # weight of the avatar's own words for this turn
    user_weight: float = 0.8           # weight of the user's turn right before it
    decay: float = 0.5                 # weight factor per older turn
    lexicon_weight: float = 0.06       # lexicon hit vs. cosine similarity scale

    @classmethod
    def from_env(cls) -> "LAUConfig":
        return cls(endpoint=os.environ.get("ECHO_LAU_ENDPOINT") or None,
                   model=os.environ.get("ECHO_LAU_MODEL", "gpt-4o-mini"))


@dataclass
class TurnEmotion:
    turn_index: int                    # index into the dialogue's turns
    text: str                          # e.g. "primarily happy and joyful"
    category: str                      # happy|sad|angry|surprised|fearful|neutral|custom
    source: str                        # "override" | "llm" | "builtin"
    scores: dict[str, float] = field(default_factory=dict)


#################################################################################
#                               Built-in inference                              #
#################################################################################

def normalise_override(emotion: str) -> tuple[str, str]:
    """dialogue.yaml `emotion:` → (category, description). Category words map to canonical text."""
    e = emotion.strip()
    key = e.lower()
    if key in SYNONYMS:
        cat = SYNONYMS[key]
        return cat, EMOTIONS[cat]
    return "custom", e


def lexicon_scores(text: str) -> dict[str, float]:
    """Counts of emotion words per category (negated words count for nothing)."""
    words = re.findall(r"[a-z']+", text.lower().replace("n't", " n't"))
    joined = " ".join(words)
    out = {c: 0.0 for c in EMOTIONS}
    for i, w in enumerate(words):
        if any(words[j] in _NEGATIONS for j in range(max(0, i - 2), i)):
            continue
        for stem, (cat, wt) in LEXICON.items():
            if " " in stem:
                continue
            if w == stem or (len(stem) >= 5 and w.startswith(stem)):
                out[cat] += wt
                break
    for stem, (cat, wt) in LEXICON.items():
        if " " in stem and stem in joined:
            out[cat] += wt
    # questions and exclamations: "really?", "what?" carry surprise
    out["surprised"] += 0.5 * text.count("?") * (1.0 if out["surprised"] > 0 else 0.3)
    return out


def _prototype_matrix() -> tuple[list[str], np.ndarray]:
    from echo_cli.features.text import embed_texts

    cats = list(EMOTIONS)
    protos = [embed_texts(PROTOTYPES[c]).mean(0) for c in cats]
    P = np.stack(protos)
    return cats, P / np.linalg.norm(P, axis=1, keepdims=True)


def _weighted_context(turns: Sequence[Turn], idx: int, cfg: LAUConfig) -> list[tuple[str, float]]:
    """(text, weight) of the avatar turn idx and the history before it."""
    out = []
    if turns[idx].text:
        out.append((turns[idx].text, cfg.avatar_weight))
    w_user = cfg.user_weight
    for j in range(idx - 1, max(-1, idx - 1 - cfg.history_turns), -1):
        if turns[j].text:
            out.append((turns[j].text, w_user))
        w_user *= cfg.decay
    return out


def builtin_scores(turns: Sequence[Turn], idx: int, cfg: LAUConfig | None = None) -> dict[str, float]:
    """Score per emotion category for avatar turn `idx` (higher = more likely)."""
    from echo_cli.features.text import embed_texts

    cfg = cfg or LAUConfig()
    ctx = _weighted_context(turns, idx, cfg)
    cats, P = _prototype_matrix()
    scores = np.zeros(len(cats))
    if not ctx:
        return {c: (1.0 if c == "neutral" else 0.0) for c in cats}
    E = embed_texts([t for t, _ in ctx])                    # (n, 384)
    W = np.array([w for _, w in ctx])
    sims = E @ P.T                                          # (n, C)
    scores += (W[:, None] * sims).sum(0) / W.sum()
    for (t, w) in ctx:
        lx = lexicon_scores(t)
        scores += cfg.lexicon_weight * w * np.array([lx[c] for c in cats])
    # neutral is the fallback when no affect is expressed at all
    return {c: float(s) for c, s in zip(cats, scores)}


def describe(scores: dict[str, float]) -> tuple[str, str]:
    """Scores → (category, "primarily X and Y"); a close runner-up colours Y."""
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    top = ranked[0][0]
    if top == "neutral":
        return top, EMOTIONS["neutral"]
    head, adj = EMOTIONS[top].split(" and ")
    if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < 0.02 and ranked[1][0] != "neutral":
        adj = _SECONDARY[ranked[1][0]]
    return top, f"{head} and {adj}"


#################################################################################
#                               Optional LLM                                    #
#################################################################################

_LLM_PROMPT = ("You read a two-person dialogue between a User and an Avatar. Describe the emotion "
               "the Avatar should show in its last turn, in the form 'primarily <emotion> and "
               "<emotion>'. Answer with that phrase only.")


def llm_emotion(turns: Sequence[Turn], idx: int, cfg: LAUConfig) -> str:
    """Ask an OpenAI-compatible chat endpoint (only called when cfg.endpoint is set)."""
    hist = "\n".join(f"{'User' if t.speaker == 'user' else 'Avatar'}: {t.text or ''}"
                     for t in turns[max(0, idx - cfg.history_turns): idx + 1])
    from echo_cli.lcu.endpoint import chat

    text = chat(cfg, _LLM_PROMPT, hist).strip().strip('."')
    if not text or len(text) > 200:
        raise ValueError("unexpected LLM answer")
    return text


#################################################################################
#                               Public API                                      #
#################################################################################

def infer_turn_emotions(turns: Sequence[Turn], cfg: LAUConfig | None = None) -> list[TurnEmotion]:
    """One TurnEmotion per avatar turn (turns are taken in start-time order)."""
    cfg = cfg or LAUConfig()
    order = sorted(range(len(turns)), key=lambda i: (turns[i].start, i))
    sorted_turns = [turns[i] for i in order]
    out = []
    for k, t in enumerate(sorted_turns):
        if t.speaker != "avatar":
            continue
        if t.emotion:
            cat, text = normalise_override(t.emotion)
            out.append(TurnEmotion(order[k], text, cat, "override"))
            continue
        if cfg.endpoint:
            try:
                text = llm_emotion(sorted_turns, k, cfg)
                cat = next((SYNONYMS[w] for w in re.findall(r"[a-z]+", text.lower()) if w in SYNONYMS), "custom")
                out.append(TurnEmotion(order[k], text, cat, "llm"))
                continue
            except Exception as e:  # network, HTTP, JSON: never fatal, fall back
                _log.warning("LAU endpoint failed (%s); using the built-in inference", e)
        scores = builtin_scores(sorted_turns, k, cfg)
        cat, text = describe(scores)
        out.append(TurnEmotion(order[k], text, cat, "builtin", scores))
    return out


def emotion_embedding(text: str) -> np.ndarray:
    """c_emo: (384,) unit-norm MiniLM embedding of an emotion description."""
    from echo_cli.features.text import embed_text

    return embed_text(text)


def classify(turns: Sequence[Turn], cfg: LAUConfig | None = None) -> str:
    """Category of the last avatar turn (used by tests and eval)."""
    emos = infer_turn_emotions(turns, cfg)
    return emos[-1].category if emos else "neutral"
