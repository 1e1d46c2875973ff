"""Deterministic speech-like audio from text, with word timings that match it to the sample.

Each whitespace-separated word becomes a voiced sound: a harmonic tone whose pitch (from a hash of
the word) glides down, shaped into one swell per syllable, with a breath of noise at the onset.
Words are separated by a short pause, commas and the like by a longer one, sentence ends by a
longer one still. The sound of a word depends only on the word, the sample rate and the pace
(``speed``, which stretches words and pauses alike), so synthesizing a text piece by piece (split
between words) gives exactly the samples of synthesizing it whole.

A pause is never digital silence: like a recording's room tone it carries a faint noise
(``ROOM_TONE``: samples of ±16 of 32768 mid-pause, rising to ±32 next to the words), under the
-60 dBFS at which speech is trimmed, above the zero codes of μ-law and A-law, and quietest
mid-pause, where a cut between words belongs. So a receiver can tell the pauses of speech from the
silence a starved pacer fills a reply with.
"""

from __future__ import annotations

import re
import zlib

import attrs
import numpy as np

WORD_GAP = 0.05
CLAUSE_PAUSE = 0.2
SENTENCE_PAUSE = 0.4
LEVEL = 0.3
ROOM_TONE = (16 / 32768, 32 / 32768)
"""The magnitude of a pause's samples mid-pause and next to the words (-66 and -60 dBFS)."""
_VOWEL_GROUPS = re.compile(r"[aeiouy]+", re.IGNORECASE)
_HARMONICS = np.arange(1, 9, dtype=np.float64)[:, None]
_HARMONIC_GAINS = (1.0 / _HARMONICS) * np.array([1.0, 0.9, 0.7, 0.5, 0.35, 0.25, 0.18, 0.12])[:, None]


@attrs.frozen
class SpokenWord:
    """A word and where its sound lies, in samples from the start of the synthesized text."""

    text: str
    start: int
    end: int


def word_seconds(word: str) -> float:
    """How long a word sounds: longer words take longer."""
    letters = sum(ch.isalnum() for ch in word)
    return min(max(0.09 + 0.055 * letters, 0.15), 0.9)


def pause_after(word: str) -> float:
    """The silence after a word: longer at punctuation."""
    if word[-1] in ".!?":
        return SENTENCE_PAUSE
    if word[-1] in ",;:-":
        return CLAUSE_PAUSE
    return WORD_GAP


def _voice(word: str, rate: int, speed: float) -> np.ndarray:
    n = round(word_seconds(word) / speed * rate)
    key = zlib.crc32(word.lower().encode())
    f0 = 95.0 + key % 70
    t = np.arange(n, dtype=np.float64) / rate
    phase = 2 * np.pi * f0 * (t - 0.15 * t * t / max(t[-1], 1e-9) / 2)  # pitch glides down 15 %
    harmonics = _HARMONICS * phase
    keep = (_HARMONICS[:, 0] * f0 < rate / 2)[:, None]
    wave = (np.sin(harmonics) * _HARMONIC_GAINS * keep).sum(axis=0)
    syllables = max(1, len(_VOWEL_GROUPS.findall(word)))
    envelope = np.sin(np.pi * syllables * np.arange(n) / n) ** 2 * 0.7 + 0.3
    envelope *= np.minimum(1.0, np.minimum(np.arange(n), n - 1 - np.arange(n)) / (0.01 * rate))
    noise = np.random.default_rng(key).standard_normal(n) * np.exp(-t / 0.03) * 0.15
    return (LEVEL * (wave / 2.0 * envelope + noise)).astype(np.float32)


def _room_tone(word: str, samples: int) -> np.ndarray:
    """The pause after ``word``: seeded random signs (they depend on the word only) of the tone's magnitude."""
    low, high = ROOM_TONE
    where = np.abs(np.linspace(-1.0, 1.0, samples)) if samples > 1 else np.zeros(samples)
    magnitude = np.round((low + (high - low) * where) * 32768) / 32768
    signs = np.random.default_rng((zlib.crc32(word.lower().encode()), 1)).integers(0, 2, samples) * 2 - 1
    return (signs * magnitude).astype(np.float32)


def synthesize(text: str, rate: int, speed: float = 1.0) -> tuple[np.ndarray, list[SpokenWord]]:
    """float32 samples at ``rate`` for ``text`` spoken at ``speed`` and where each word lies in them."""
    pieces: list[np.ndarray] = []
    words: list[SpokenWord] = []
    cursor = 0
    for word in text.split():
        sound = _voice(word, rate, speed)
        words.append(SpokenWord(word, cursor, cursor + len(sound)))
        pause = _room_tone(word, round(pause_after(word) / speed * rate))
        pieces += [sound, pause]
        cursor += len(sound) + len(pause)
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return audio, words
