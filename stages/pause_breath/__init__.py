"""``pause_breath``: pauses at punctuation and breaths between words, placed by word timings."""

from .stage import PauseBreath, PauseBreathStatistics

__all__ = ["PauseBreath", "PauseBreathStatistics"]
