"""``pause_breath``: natural pauses at punctuation and synthesized breaths, at word boundaries."""

from __future__ import annotations

import attrs

from rtstream.caps import ANY_SIZE, Caps
from rtstream.frames import AudioFormat, Encoding
from rtstream.markup import BREATH_TYPES
from rtstream.params import ParamError, param
from rtstream.registry import register
from rtstream.stage import CoreElement, Filter

from .core import PauseBreathCore, PauseBreathStatistics
from .script import PUNCTUATION_REASONS


def _range(default: tuple[float, float], help: str) -> tuple[float, float]:
    return param(default, type=(float,), min=0, max=10, unit="s", help=f"{help} [shortest, longest]")


@register("pause_breath", klass="Filter/Speech")
@attrs.frozen(kw_only=True)
class PauseBreath(Filter):
    """Inserts natural pauses at punctuation and synthesized breaths between words, by the word timings.

    Place it before the chunker: it inserts audio of any length. It needs the transcript in
    UtteranceStart.text (inline tags [breath], [breath type="deep"], [sigh], [pause 300ms],
    [emphasis] honoured) and the WordTimings of each utterance, before or after its audio.
    """

    accepts = Caps(encodings=(Encoding.PCM_S16LE, Encoding.PCM_F32LE))
    statistics_type = PauseBreathStatistics
    frames_help = "makes chunks of any size (it inserts audio of any length): put the chunker after it"

    comma: tuple[float, float] = _range((0.10, 0.20), "Pause after a comma.")
    period: tuple[float, float] = _range((0.40, 0.60), "Pause after a period that ends a sentence.")
    question: tuple[float, float] = _range((0.50, 0.70), "Pause after a question mark.")
    exclamation: tuple[float, float] = _range((0.30, 0.50), "Pause after an exclamation mark.")
    semicolon: tuple[float, float] = _range((0.30, 0.50), "Pause after a semicolon.")
    colon: tuple[float, float] = _range((0.30, 0.50), "Pause after a colon.")
    sentence: tuple[float, float] = _range((0.30, 0.50), "Pause at another sentence boundary: an ellipsis (… or ...).")
    dash: tuple[float, float] = _range((0.15, 0.25), "Pause at a dash standing between words (— or –).")
    emphasis: tuple[float, float] = _range((0.15, 0.25), "Pause before a word marked [emphasis].")
    reference_rate: float = param(
        14.0,
        min=0,
        max=100,
        unit="letters/s",
        help="Speech rate at which pauses take their nominal length; faster speech gets shorter pauses. 0: no scaling.",
    )
    rate_scale: tuple[float, float] = param(
        (0.7, 1.4), type=(float,), gt=0, max=5, help="Limits of the speech-rate factor on pause lengths: [least, most]."
    )
    breath_probability: float = param(
        0.5, min=0, max=1, help="Chance of a breath at a sentence end (when the last one was long enough ago)."
    )
    breath_min_interval: float = param(
        2.0, min=0, max=60, unit="s", help="Speech since the last breath before a sentence end may take another."
    )
    deep_breath_after: float = param(
        8.0, min=0, max=60, unit="s", help="Speech since the last breath after which a sentence-end breath is deep."
    )
    breath_level: float = param(
        -24.0, min=-60, max=0, unit="dB", help="Level of a normal breath relative to the speech RMS."
    )
    breath_normal: tuple[float, float] = _range((0.18, 0.26), "Length of a normal breath.")
    breath_deep: tuple[float, float] = _range((0.25, 0.30), "Length of a deep breath.")
    breath_quick: tuple[float, float] = _range((0.10, 0.15), "Length of a quick breath.")
    breath_sigh: tuple[float, float] = _range((0.40, 0.70), "Length of a sigh (an exhale).")
    breath_gap: float = param(0.04, min=0, max=1, unit="s", help="Silence between a breath and the speech after it.")
    fade_ms: float = param(5.0, gt=0, max=50, unit="ms", help="Fade on each side of every joint, against clicks.")
    max_wait: float = param(
        0.5,
        gt=0,
        max=10,
        unit="s",
        help=(
            "Longest audio waits for its word timings before it goes out unshaped"
            " (waiting on downstream does not count)."
        ),
    )
    max_hold: float = param(
        4.0,
        gt=0,
        max=60,
        unit="s",
        help="Most audio held waiting for word timings; beyond it the oldest goes out unshaped.",
    )
    seed: int = param(0, min=0, help="Seed of the random pause lengths and breaths (the same seed, the same output).")
    on_bad_markup: str = param(
        "warn",
        choices=("warn", "fail"),
        help="A malformed tag in a transcript: log it and leave that utterance unshaped, or fail.",
    )

    def __attrs_post_init__(self) -> None:
        for name in (*PUNCTUATION_REASONS, "emphasis", "rate_scale", *(f"breath_{t}" for t in BREATH_TYPES)):
            value = getattr(self, name)
            if len(value) != 2 or value[0] > value[1]:
                raise ParamError(name, f"must be two numbers [low, high] with low <= high, got {list(value)}")

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        """The pause range of each punctuation reason."""
        return {reason: getattr(self, reason) for reason in PUNCTUATION_REASONS}

    @property
    def breath_ranges(self) -> dict[str, tuple[float, float]]:
        return {kind: getattr(self, f"breath_{kind}") for kind in BREATH_TYPES}

    def frames_out(self) -> float:
        """Chunks of any size: it inserts audio of any length."""
        return ANY_SIZE

    def open(self, fmt_in: AudioFormat | None, fmt_out: AudioFormat | None) -> CoreElement:
        assert fmt_in is not None
        return CoreElement(PauseBreathCore(self, fmt_in), clock_stops_while_sending=True)
