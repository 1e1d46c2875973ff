"""16-bit PCM WAV files: checked reading and streaming writing."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from .frames import SAMPLE_RATES, AudioFormat, Encoding
from .params import show_path


class WavError(ValueError):
    """A WAV file that rtstream cannot read; the message says why."""


def open_wav(path: str | Path) -> tuple[wave.Wave_read, AudioFormat]:
    """Open a WAV file for reading, checking it is 16-bit PCM, mono or stereo, at a supported rate.

    Every failure, an OSError of any kind included (``/proc/self/mem`` gives EIO), is a WavError.
    """
    name = show_path(str(path) if isinstance(path, Path) else path)
    try:
        reader = wave.open(str(path), "rb")  # noqa: SIM115  (the caller closes it)
    except FileNotFoundError:
        raise WavError(f"file not found: {name}") from None
    except IsADirectoryError:
        raise WavError(f"is a directory, not a WAV file: {name}") from None
    except EOFError:
        raise WavError(f"not a readable PCM WAV file (it ends inside its header): {name}") from None
    except wave.Error as exc:
        raise WavError(f"not a readable PCM WAV file ({exc}): {name}") from None
    except OSError as exc:
        raise WavError(f"cannot read the file ({exc.strerror or type(exc).__name__}): {name}") from None
    try:
        width, channels, rate = reader.getsampwidth(), reader.getnchannels(), reader.getframerate()
        if width != 2:
            raise WavError(f"has {8 * width}-bit samples; rtstream reads 16-bit PCM WAV files: {name}")
        if channels not in (1, 2):
            raise WavError(f"has {channels} channels; use a mono or stereo file: {name}")
        if rate not in SAMPLE_RATES:
            rates = ", ".join(map(str, SAMPLE_RATES))
            raise WavError(f"has a sample rate of {rate} Hz; use one of {rates}: {name}")
    except WavError:
        reader.close()
        raise
    return reader, AudioFormat(Encoding.PCM_S16LE, rate, channels)


def read_wav(path: str | Path) -> tuple[np.ndarray, AudioFormat]:
    """A whole 16-bit WAV file: samples (shape (n,) or (n, 2)) and format."""
    reader, fmt = open_wav(path)
    with reader:
        raw = reader.readframes(reader.getnframes())
    usable = len(raw) - len(raw) % fmt.frame_bytes
    return fmt.array(raw[:usable]).copy(), fmt


class WavWriter:
    """Appends PCM16 samples to a WAV file; the header is written once, on close."""

    def __init__(self, path: str | Path, fmt: AudioFormat) -> None:
        if fmt.encoding is not Encoding.PCM_S16LE:
            raise ValueError(f"WAV files are written as pcm_s16le, not {fmt.encoding}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb", buffering=1 << 16)  # noqa: SIM115  (closed in close())
        self._wave = wave.open(self._file, "wb")  # noqa: SIM115  (closed in close())
        self._wave.setnchannels(fmt.channels)
        self._wave.setsampwidth(2)
        self._wave.setframerate(fmt.sample_rate)

    def write(self, samples: np.ndarray) -> None:
        self._wave.writeframesraw(samples.astype("<i2", copy=False).tobytes())

    def close(self) -> None:
        self._wave.close()  # patches the header with the final length
        self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_wav(path: str | Path, samples: np.ndarray, fmt: AudioFormat) -> None:
    """Write a whole PCM16 array as a WAV file."""
    with WavWriter(path, fmt) as writer:
        writer.write(samples)
