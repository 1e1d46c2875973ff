"""Utterances with known word spans, and what the pause_breath core made of them."""

from __future__ import annotations

import math
import re

import attrs
import numpy as np

from rtstream.frames import AudioChunk, AudioFormat, UtteranceEnd, UtteranceStart, Word, WordTimings
from rtstream.markup import MarkupError
from rtstream.stages.pause_breath import PauseBreath
from rtstream.stages.pause_breath.core import PauseBreathCore
from rtstream.stages.pause_breath.script import read_script

RATE = 8000
FMT = AudioFormat("pcm_s16le", RATE)
EXACT = {
    "comma": (0.15, 0.15),
    "period": (0.5, 0.5),
    "question": (0.6, 0.6),
    "exclamation": (0.4, 0.4),
    "semicolon": (0.35, 0.35),
    "colon": (0.3, 0.3),
    "sentence": (0.45, 0.45),
    "dash": (0.2, 0.2),
    "emphasis": (0.25, 0.25),
    "reference_rate": 0.0,
    "breath_probability": 0.0,
}
"""Settings under which every pause has one length and nothing is random."""

TEXT = "Hello, world. How are you? Fine"
SPANS = [(0.10, 0.50), (0.60, 1.00), (1.20, 1.40), (1.45, 1.60), (1.65, 2.00), (2.30, 2.60)]
LENGTH = 2.7
"""A short utterance: a comma, a period and a question mark, each in a silent gap."""


def speech(spans, length, *, fmt=FMT, floor=0, level=8000, seed=0):
    """Words as loud noisy tones over ``spans`` (seconds), a noise floor of ``floor`` between them."""
    rate = fmt.sample_rate
    rng = np.random.default_rng(seed)
    wave = rng.standard_normal(round(length * rate)) * floor
    t = np.arange(len(wave)) / rate
    for start, end in spans:
        a, b = round(start * rate), round(end * rate)
        wave[a:b] = level * (0.7 * np.sin(2 * math.pi * 220 * t[a:b]) + 0.3 * rng.standard_normal(b - a))
    wave = np.clip(wave, -32768, 32767)
    wave = (wave / 32768).astype(np.float32) if fmt.encoding.value == "pcm_f32le" else np.rint(wave).astype(np.int16)
    return wave if fmt.channels == 1 else np.stack([wave, wave // 2 if wave.dtype == np.int16 else wave / 2], axis=1)


def chunks(audio, sizes, *, uid="u", fmt=FMT, pts=0):
    """``audio`` cut into chunks of the given sizes (repeated), each with a sequence number."""
    out, at, n = [], 0, 0
    sizes = [sizes] if isinstance(sizes, int) else list(sizes)
    while at < len(audio):
        size = sizes[n % len(sizes)]
        out.append(AudioChunk(audio[at : at + size], fmt, pts=pts + at, seq=n, utterance=uid))
        at += size
        n += 1
    return out


def _spoken(text):
    try:
        return list(read_script(text).words)
    except MarkupError:  # a transcript the stage will refuse: number its words without the tags
        return [w for w in re.sub(r"\[[^\]]*\]", " ", text).split() if any(c.isalnum() for c in w)]


def timings(uid, text_words, spans):
    return WordTimings(uid, tuple(Word(w.strip(",.?!;:"), a, b) for w, (a, b) in zip(text_words, spans, strict=True)))


def utterance(text, spans, audio, *, uid="u", sizes=160, place="before", fmt=FMT, pts=0, words=None):
    """The frames of one utterance; ``place`` puts its timings before, after or among its audio."""
    spoken = words or _spoken(text)
    body = chunks(audio, sizes, uid=uid, fmt=fmt, pts=pts)
    if place == "none":
        return [UtteranceStart(uid, text), *body, UtteranceEnd(uid)]
    if place == "before":
        return [UtteranceStart(uid, text), timings(uid, spoken, spans), *body, UtteranceEnd(uid)]
    if place == "after":
        return [UtteranceStart(uid, text), *body, UtteranceEnd(uid), timings(uid, spoken, spans)]
    # "split": each word's timing right after the chunk holding its end
    frames = [UtteranceStart(uid, text)]
    rate = fmt.sample_rate
    k = 0
    for chunk in body:
        frames.append(chunk)
        while k < len(spans) and round(spans[k][1] * rate) <= chunk.end_pts - pts:
            frames.append(timings(uid, spoken[k : k + 1], spans[k : k + 1]))
            k += 1
    frames += [timings(uid, spoken[k:], spans[k:])] if k < len(spans) else []
    return [*frames, UtteranceEnd(uid)]


@attrs.frozen
class Shaped:
    frames: list
    counts: object

    @property
    def chunks(self):
        return [f for f in self.frames if isinstance(f, AudioChunk)]

    @property
    def events(self):
        return [f for f in self.frames if not isinstance(f, AudioChunk)]

    def audio(self):
        return np.concatenate([c.data for c in self.chunks])

    def cuts(self):
        """(input position, samples) of every inserted segment (inserted chunks carry no seq)."""
        found, position = [], 0
        for chunk in self.chunks:
            if chunk.seq is None:
                found.append((position, chunk.samples))
            else:
                position += chunk.samples
        return found

    def without_insertions(self):
        return np.concatenate([c.data for c in self.chunks if c.seq is not None])


def shape(frames, *, fmt=FMT, times=None, **params):
    """Run the core as the stage does: frames pushed at ``times`` (default all at 0), polls at deadlines."""
    core = PauseBreathCore(PauseBreath(**params), fmt)
    out = []
    for i, frame in enumerate(frames):
        now = 0.0 if times is None else times[i]
        while core.deadline <= now:
            due = core.deadline
            out += core.poll(due)
            assert core.deadline > due, "a poll at the deadline let nothing go: the stage would spin"
        out += core.push(frame, now)
    out += core.end()
    return Shaped(out, core.counts)
