"""Phonetic prior: words -> phonemes (CMUdict, letter rules) -> visemes at the frame rate."""
import numpy as np
import pytest

from echo_cli.features import phonetic as P
from echo_cli.schema import Word


def test_cmudict_and_letter_rules():
    assert P.word_phonemes("Hello,") == ["HH", "AH", "L", "OW"]
    assert P.word_phonemes("mom") [0] == "M"
    # not in the dictionary: letter-to-sound rules still give plausible phonemes
    ph = P.word_phonemes("Zorblatch")
    assert ph[0] == "Z" and ph[-1] == "CH"
    assert P.word_phonemes("...") == []
    assert all(p in P.PHONEME_TO_VISEME for p in P.letter_to_sound("quickly thought phase"))


def test_viseme_track_timing_and_classes():
    fps = 25.0
    words = [Word("mama", 0.2, 0.6), Word("see", 1.0, 1.4)]
    vis = P.viseme_track(words, 50, fps)
    names = [P.VISEMES[v] for v in vis]
    t = (np.arange(50) + 0.5) / fps
    assert all(n == "sil" for n, tt in zip(names, t) if tt < 0.2 or 0.6 <= tt < 1.0 or tt >= 1.4)
    first = names[int(0.2 * fps)]
    assert first == "PP"                          # m closes the lips at the start of "mama"
    assert "aa" in names[5:15] and "SS" in names[25:35] and "ih" in names[25:35]
    # phonemes are in order and inside their word
    tl = P.phoneme_timeline(words)
    assert [p for p, _, _ in tl[:4]] == ["M", "AA", "M", "AH"]
    assert all(words[0].start - 1e-9 <= a < b <= words[0].end + 1e-9 for _, a, b in tl[:4])


def test_no_words_means_unknown_not_silence():
    vis = P.viseme_track([], 10, 25.0)
    assert (vis == -1).all()
    assert np.isnan(P.openness_track(vis)).all()


def test_openness_prior_orders_visemes():
    o = P.VISEME_OPENNESS
    assert o["PP"] < o["ih"] < o["aa"] and o["sil"] == 0


@pytest.mark.skipif(not P.espeak_available(), reason="espeak-ng is not installed (apt-get install -y espeak-ng)")
def test_espeak_synthesis_gives_exact_word_boundaries():
    from echo_cli.schema import SAMPLE_RATE
    wave, words = P.synthesize_espeak("Bob meets Anna", seed=0)
    assert [w.text for w in words] == ["Bob", "meets", "Anna"]
    assert words[-1].end <= wave.size / SAMPLE_RATE + 1e-6
    for w in words:                                   # sound inside every word, silence in the gaps
        seg = wave[int(w.start * SAMPLE_RATE): int(w.end * SAMPLE_RATE)]
        assert np.abs(seg).max() > 0.01
    gap = wave[int(words[0].end * SAMPLE_RATE) + 10: int(words[1].start * SAMPLE_RATE) - 10]
    assert gap.size == 0 or np.abs(gap).max() < 0.01
    vis = P.viseme_track(words, int(wave.size / SAMPLE_RATE * 25), 25.0)
    assert P.VISEMES[vis[int(words[0].start * 25 + 0.5)]] == "PP"   # "Bob" starts on closed lips
