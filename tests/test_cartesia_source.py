"""``cartesia_tts``: the sans-I/O utterance core, then the stage against the simulator on loopback."""

import base64
import functools
import itertools
import json
import logging
import re

import numpy as np
import pytest
import trio
from click.testing import CliRunner
from sims import tts_server, upgrading

from rtstream.cli import main
from rtstream.errors import StageFailed
from rtstream.frames import AudioChunk, AudioFormat, UtteranceEnd, UtteranceStart, Word, WordTimings
from rtstream.markup import strip_tags
from rtstream.params import ParamError
from rtstream.simulators.speech import synthesize
from rtstream.simulators.tts import TtsSession, TtsSettings, audio_of
from rtstream.simulators.websocket import converse, serve
from rtstream.stages.cartesia import CartesiaDialect, CartesiaTTS
from rtstream.stages.pause_breath.script import is_spoken, read_script
from rtstream.stages.tts import MAX_RUN, Counts, Speech
from rtstream.testing import run_stage
from rtstream.websocket import WebSocket
from rtstream.wire import RemoteProtocolError
from rtstream.wire.cartesia import Generation

PCM8 = AudioFormat("pcm_s16le", 8000)
TEXT = "Hello there [pause 200ms] and welcome, this is the bridge."
CLEAN = "Hello there and welcome, this is the bridge."


def speech(words="one two three", fmt=PCM8, timestamps=True, chunk_words=0, **wire):
    """A spoken utterance's core and a Cartesia dialect, the whole text given."""
    generation = Generation(model_id="m", voice_id="v", format=fmt, timestamps=timestamps)
    dialect = CartesiaDialect(
        generation,
        chunk_words=chunk_words,
        sequence_field=wire.get("sequence_field"),
        max_message_bytes=wire.get("max_message_bytes", 1 << 20),
    )
    core = Speech("utt-1", fmt, counts=Counts(), pts=0, seq_base=0)
    core.extend(None, words, True, 0.0)
    return core, dialect


def chunk(data: bytes, context="utt-1", **extra):
    return json.dumps({"type": "chunk", "data": base64.b64encode(data).decode(), "context_id": context, **extra})


def stamps(context, words, start, end):
    return json.dumps(
        {"type": "timestamps", "context_id": context, "word_timestamps": {"words": words, "start": start, "end": end}}
    )


def hear(core, dialect, message, now=0.0):
    return core.receive(dialect.receive(message, now), now)


# -- the core ------------------------------------------------------------------------------------


def test_requests_split_words_and_continue_and_an_empty_request_ends_the_context():
    core, dialect = speech("a b c d e", chunk_words=2)
    requests = [json.loads(r) for r in core.open(dialect, 0.0)]
    assert [(r["transcript"], r["continue"], r["context_id"]) for r in requests] == [
        ("a b ", True, "utt-1"),
        ("c d ", True, "utt-1"),
        ("e ", True, "utt-1"),
        ("", False, "utt-1"),
    ]
    assert all(r["model_id"] == "m" for r in requests)


def test_odd_byte_counts_are_carried_and_seq_and_arrival_stamped():
    core, dialect = speech(sequence_field="seq")
    core.open(dialect, 0.0)
    [a] = hear(core, dialect, chunk(b"\x01\x00\x02", seq=0), 5.0)
    [b] = hear(core, dialect, chunk(b"\x00\x03\x00", seq=1), 6.0)
    assert a.data.tolist() == [1] and b.data.tolist() == [2, 3]
    assert (a.pts, b.pts, a.seq, b.seq, a.arrival, b.arrival) == (0, 1, 0, 1, 5.0, 6.0)


def test_transport_encodings_are_converted_on_arrival():
    generation = Generation(model_id="m", voice_id="v", format=PCM8, transport="pcm_s32le")
    dialect = CartesiaDialect(generation, chunk_words=0, sequence_field=None, max_message_bytes=1 << 20)
    assert json.loads(dialect.start("c", "Hi ", 0.0)[0])["output_format"]["encoding"] == "pcm_s32le"
    samples = np.array([1 << 16, -(2 << 16), 3 << 16], dtype="<i4").tobytes()
    first = dialect.receive(chunk(samples[:5], context="c"), 0.0)[0].audio
    rest = dialect.receive(chunk(samples[5:], context="c"), 0.0)[0].audio
    assert np.frombuffer(first + rest, "<i2").tolist() == [1, -2, 3]


@pytest.mark.parametrize(
    "message,reason",
    [
        (b"\x00", "binary_frame"),
        ("{", "bad_json"),
        ("[1]", "bad_shape"),
        ('{"type": "song"}', "unknown_event"),
        ('{"type": "chunk", "data": "!!", "context_id": "utt-1"}', "bad_base64"),
        ('{"type": "chunk", "context_id": "utt-1"}', "bad_shape"),
        (
            '{"type": "timestamps", "context_id": "utt-1",'
            ' "word_timestamps": {"words": ["a"], "start": [], "end": []}}',
            "bad_timestamps",
        ),
        ("x" * 2000, "oversize"),
    ],
)
def test_malformed_messages_are_refused_with_their_reason(message, reason):
    _, dialect = speech(max_message_bytes=1024)
    with pytest.raises(RemoteProtocolError, match=rf"^{reason}\b"):
        dialect.receive(message, 0.0)


def hear_all(core, dialect, messages, now=0.0):
    """The messages one socket read brought, read together as the shell reads them."""
    return core.receive([r for m in messages for r in dialect.receive(m, now)], now)


def test_audio_in_hand_is_one_chunk_and_the_words_it_completes_follow_it():
    core, dialect = speech("one two three")
    core.open(dialect, 0.0)
    pieces = [b"\x01\x00" * 800, b"\x02\x00" * 400, b"\x03\x00" * 800]  # 0.1, 0.05, 0.1 s
    batch = [chunk(pieces[0]), stamps("utt-1", ["one"], [0.0], [0.1]), chunk(pieces[1]), chunk(pieces[2])]
    audio, words = hear_all(core, dialect, batch, 2.0)
    assert isinstance(audio, AudioChunk) and audio.data.tobytes() == b"".join(pieces)
    assert (audio.pts, audio.arrival, audio.seq) == (0, 2.0, None)
    assert words == WordTimings("utt-1", [Word("one", 0.0, 0.1)])
    [after] = hear_all(core, dialect, [chunk(b"\x00\x00" * 10)], 3.0)
    assert (after.pts, core._counts.chunks, core._counts.samples) == (2000, 4, 2010)


def test_a_merged_chunk_holds_at_most_max_run_of_audio():
    core, dialect = speech()
    core.open(dialect, 0.0)
    most = round(MAX_RUN * 8000)
    sizes = [most // 2, most // 2, 1, most]
    out = hear_all(core, dialect, [chunk(b"\x00\x00" * n) for n in sizes])
    assert [(c.pts, len(c.data)) for c in out] == [(0, most), (most, 1), (most + 1, most)]


def test_numbered_chunks_merge_only_while_they_come_in_order_and_the_numbers_stay_consecutive():
    """Merged chunks give up their numbers, so a sequencer downstream sees no loss; a real gap stays one."""
    core, dialect = speech(sequence_field="seq")
    core.open(dialect, 0.0)
    two = b"\x00\x00" * 2
    first = hear_all(core, dialect, [chunk(two, seq=0), chunk(two, seq=1), chunk(two, seq=2)])
    second = hear_all(core, dialect, [chunk(two, seq=3)])
    jumped = hear_all(core, dialect, [chunk(two, seq=5), chunk(two, seq=6)])  # 4 is missing: no merging from here
    late = hear_all(core, dialect, [chunk(two, seq=4)])
    assert [(c.seq, c.pts, len(c.data)) for c in first + second + jumped + late] == [
        (0, 0, 6),
        (1, 6, 2),
        (3, 8, 2),
        (4, 10, 2),
        (2, 12, 2),  # the missing one takes the number left for it
    ]
    assert core.seq_next == 5


def test_readings_after_the_contexts_end_in_the_same_read_are_stale():
    core, dialect = speech()
    core.open(dialect, 0.0)
    done = json.dumps({"type": "done", "context_id": "utt-1"})
    out = hear_all(core, dialect, [chunk(b"\x00\x00"), done, chunk(b"\x00\x00")])
    assert [type(f) for f in out] == [AudioChunk] and core.finished and core._counts.stale == 1


def test_messages_of_other_contexts_are_stale():
    core, dialect = speech()
    core.open(dialect, 0.0)
    assert hear(core, dialect, chunk(b"\x00\x00", context="old")) == [] and core._counts.stale == 1


def test_resume_from_the_first_word_not_fully_received():
    core, dialect = speech("one two three four")
    core.open(dialect, 0.0)
    hear(core, dialect, chunk(b"\x00\x00" * 8000))  # 1 s of audio
    [heard] = hear(core, dialect, stamps("utt-1", ["one", "two"], [0.0, 0.5], [0.4, 0.9]))
    assert [w.text for w in heard.words] == ["one", "two"]
    core.lost()
    assert core.resume_from == 2 and core._counts.resumes == 1
    assert core._counts.repeated_seconds == pytest.approx(0.1)
    requests = [json.loads(r) for r in core.open(dialect, 0.0)]
    assert [(r["transcript"], r["context_id"]) for r in requests] == [("three four ", "utt-1-r1"), ("", "utt-1-r1")]
    assert hear(core, dialect, stamps("utt-1-r1", ["three"], [0.0], [0.3])) == []  # its audio has not come yet
    [c, timing] = hear(core, dialect, chunk(b"\x00\x00" * 2400, context="utt-1-r1"))
    assert c.pts == 8000
    assert timing.words[0].start == pytest.approx(1.0)  # utterance time: after the second already heard


def test_an_error_reply_resumes_and_a_done_finishes():
    core, dialect = speech("one two")
    core.open(dialect, 0.0)
    error = {"type": "error", "status_code": 429, "error_code": "concurrency_limited", "context_id": "utt-1"}
    hear(core, dialect, json.dumps({**error, "done": True}))
    assert core.error == "concurrency_limited" and not core.finished and core.resume_from == 0
    core.open(dialect, 0.0)
    hear(core, dialect, json.dumps({"type": "done", "done": True, "context_id": "utt-1-r1"}))
    assert core.finished and core._counts.service_errors.snapshot() == {"concurrency_limited": 1}


def test_transcript_parameters_are_checked(tmp_path):
    assert CartesiaTTS().role == "filter" and CartesiaTTS(transcript="Hi.").role == "source"
    with pytest.raises(ParamError, match=r"^transcript: unknown tag .*: '\[shout\]' at character 3$"):
        CartesiaTTS(transcript="Hi [shout] there")
    path = tmp_path / "lines.txt"
    path.write_text("First line.\n\n  Second [breath] line.  \n")
    assert CartesiaTTS(transcript_file=str(path)).utterances == ("First line.", "Second [breath] line.")
    # the line as numbered in the file (blank lines count), the character as placed in that line
    path.write_text("Fine.\n\n  Then [pause] this.\nAnd [sigh] this.\n")
    with pytest.raises(
        ParamError,
        match=rf"^transcript_file: {re.escape(str(path))} line 3: malformed pause tag "
        r"\(write \[pause 300ms\] or \[pause 1.5s\]\): '\[pause\]' at character 7$",
    ):
        CartesiaTTS(transcript_file=str(path))


BAD_TAG = """
[services.tts]
type = "tts"

[pipelines.call]
[[pipelines.call.stages]]
type = "cartesia_tts"
name = "greeting"
url = "${services.tts.url}"
%s

[[pipelines.call.stages]]
type = "null_sink"
"""


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_malformed_tag_is_a_config_error_before_anything_is_spoken(tmp_path, command):
    config = tmp_path / "p.toml"
    config.write_text(BAD_TAG % 'transcript = "Hello, [breath type=\\"loud\\"] there."')
    result = CliRunner().invoke(main, [command, str(config)], catch_exceptions=False)
    assert (result.exit_code, result.output) == (
        2,
        (
            f"Error: {config}: pipeline 'call', stage 1 'greeting' (cartesia_tts), key 'transcript': "
            "unknown breath type "
            """(use one of normal, deep, quick, sigh): '[breath type="loud"]' at character 7\n"""
        ),
    )
    lines = tmp_path / "lines.txt"
    lines.write_text("This line is fine.\nThis one [pause] is not.\n")
    config.write_text(BAD_TAG % f'transcript_file = "{lines}"')
    result = CliRunner().invoke(main, [command, str(config)], catch_exceptions=False)
    assert (result.exit_code, result.output) == (
        2,
        (
            f"Error: {config}: pipeline 'call', stage 1 'greeting' (cartesia_tts), key 'transcript_file': "
            f"{lines} line 2: "
            "malformed pause tag (write [pause 300ms] or [pause 1.5s]): '[pause]' at character 9\n"
        ),
    )


def test_a_list_of_transcripts_is_one_utterance_each():
    with pytest.raises(ParamError, match=r"^transcript: give one of transcript, transcripts or transcript_file"):
        CartesiaTTS(transcript="Hi.", transcripts=("Hi.",))
    with pytest.raises(ParamError, match=r"^transcripts: item 2: unknown tag .*'\[shout\]' at character 0$"):
        CartesiaTTS(transcripts=("Hello.", "[shout] Bye."))
    with pytest.raises(ParamError, match=r"^transcripts: gives nothing to say$"):
        CartesiaTTS(transcripts=())
    assert CartesiaTTS(transcripts=["One.", "Two [breath] more."]).utterances == ("One.", "Two [breath] more.")


# -- the stage against the simulator -------------------------------------------------------------


async def test_speech_arrives_as_synthesized_with_word_timings():
    with trio.fail_after(15):
        async with tts_server(rtf=50, first_byte_latency=0.01) as (url, _):
            out = await run_stage(CartesiaTTS(url=url, transcript=TEXT, sample_rate=8000, encoding="pcm_s16le"))
    assert out.frames[0] == UtteranceStart("utt-1", TEXT)
    assert out.frames[-1] == UtteranceEnd("utt-1")
    assert np.array_equal(out.audio(), audio_of(CLEAN, PCM8))
    _, spoken = synthesize(CLEAN, 8000)
    words = [w for f in out.events if isinstance(f, WordTimings) for w in f.words]
    assert [(w.text, w.start, w.end) for w in words] == [(w.text, w.start / 8000, w.end / 8000) for w in spoken]
    chunks = out.chunks
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert all(c.arrival is not None for c in chunks)
    assert [c.pts for c in chunks] == list(np.cumsum([0] + [c.samples for c in chunks[:-1]]))
    stats = out.report.stages[0].statistics
    assert stats["malformed"] == {} and stats["word_timings"] == len(spoken) and stats["contexts"] == 1
    first = stats["first_chunk_ms"]  # request to first audio: the simulator's first-byte latency and more
    assert first.count == 1 and 10 <= first.max < 1000


async def test_a_file_of_lines_in_pieces_and_random_odd_chunks(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("First of two.\nAnd the second one, longer.\n")
    with trio.fail_after(15):
        async with tts_server(rtf=50, first_byte_latency=0, chunking="random", min_bytes=101, max_bytes=777) as (
            url,
            _,
        ):
            out = await run_stage(CartesiaTTS(url=url, transcript_file=str(path), chunk_words=2, sample_rate=16000))
    starts = [f for f in out.events if isinstance(f, UtteranceStart)]
    assert [s.text for s in starts] == ["First of two.", "And the second one, longer."]
    fmt = AudioFormat("pcm_s16le", 16000)
    expected = np.concatenate([audio_of("First of two.", fmt), audio_of("And the second one, longer.", fmt)])
    assert np.array_equal(out.audio(), expected)
    chunks = out.chunks
    assert [c.seq for c in chunks] == list(range(len(chunks)))  # stream-wide across the two contexts


async def test_negotiation_asks_the_service_for_what_downstream_takes():
    from rtstream.caps import Caps

    with trio.fail_after(15):
        async with tts_server(rtf=50, first_byte_latency=0) as (url, _):
            out = await run_stage(
                CartesiaTTS(url=url, transcript="Hi."), accept=Caps.of(AudioFormat("pcm_mulaw", 8000))
            )
    assert out.chunks[0].format == AudioFormat("pcm_mulaw", 8000)
    assert np.array_equal(out.audio(), audio_of("Hi.", AudioFormat("pcm_mulaw", 8000)))


class _Vandal:
    """A TTS session that slips malformed messages between the real ones."""

    BAD = (
        "{not json",
        json.dumps({"type": "karaoke", "context_id": "utt-1"}),
        json.dumps({"type": "chunk", "data": "@@@", "context_id": "utt-1"}),
        "x" * 5000,
        b"\x00\x01",
    )

    def __init__(self, session):
        self.session = session
        self.sent = 0

    def receive(self, message, now):
        self.session.receive(message, now)

    def pop_due(self, now):
        out = []
        for m in self.session.pop_due(now):
            if self.sent < len(self.BAD) and '"chunk"' in m:
                out.append(self.BAD[self.sent])
                self.sent += 1
            out.append(m)
        return out

    def next_due(self):
        return self.session.next_due()


async def test_malformed_server_messages_are_counted_and_logged_while_the_call_goes_on(caplog):
    settings = TtsSettings(rtf=50, first_byte_latency=0)

    async def handler(ws: WebSocket):
        await converse(ws, _Vandal(TtsSession(settings)), peer="vandal")

    caplog.set_level(logging.WARNING, logger="rtstream.stages.cartesia")
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(functools.partial(serve, upgrading(handler), "127.0.0.1", 0))
            source = CartesiaTTS(
                url=f"ws://127.0.0.1:{port}/tts/websocket",
                transcript="Still going strong.",
                sample_rate=8000,
                max_message_bytes=4096,
            )
            out = await run_stage(source)
            nursery.cancel_scope.cancel()
    assert np.array_equal(out.audio(), audio_of("Still going strong.", PCM8))
    assert out.report.stages[0].statistics["malformed"] == {
        "bad_base64": 1,
        "bad_json": 1,
        "binary_frame": 1,
        "oversize": 1,
        "unknown_event": 1,
    }
    logged = [r.getMessage() for r in caplog.records]
    assert any(f"malformed message from ws://127.0.0.1:{port} (bad_json" in m for m in logged)


class _Recorder:
    """A TTS session that keeps every request it receives."""

    def __init__(self, session):
        self.session = session
        self.requests = []

    def receive(self, message, now):
        self.requests.append(json.loads(message))
        self.session.receive(message, now)

    def pop_due(self, now):
        return self.session.pop_due(now)

    def next_due(self):
        return self.session.next_due()


async def test_the_service_gets_the_clean_text_and_the_stream_the_tags_and_utterance_timings(tmp_path):
    lines = ["Hello, [breath] how are [emphasis] you?", 'Fine — [pause 300ms] thanks [breath type="deep"] a lot.']
    path = tmp_path / "lines.txt"
    path.write_text("\n".join(lines))
    settings = TtsSettings(rtf=50, first_byte_latency=0)
    recorders = []

    async def handler(ws: WebSocket):
        recorders.append(_Recorder(TtsSession(settings)))
        await converse(ws, recorders[-1], peer="recorder")

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(functools.partial(serve, upgrading(handler), "127.0.0.1", 0))
            source = CartesiaTTS(
                url=f"ws://127.0.0.1:{port}/tts/websocket",
                transcript_file=str(path),
                chunk_words=2,
                sample_rate=8000,
                encoding="pcm_s16le",
            )
            out = await run_stage(source)
            nursery.cancel_scope.cancel()
    [recorder] = recorders
    sent = {}
    for request in recorder.requests:
        sent[request["context_id"]] = sent.get(request["context_id"], "") + request["transcript"]
    assert {context: text.split() for context, text in sent.items()} == {
        "utt-1": strip_tags(lines[0]).split(),
        "utt-2": strip_tags(lines[1]).split(),
    }
    frames = out.frames
    pts = 0
    for n, line in enumerate(lines, 1):
        mine = [f for f in frames if f.utterance == f"utt-{n}"]
        assert mine[0] == UtteranceStart(f"utt-{n}", line) and mine[-1] == UtteranceEnd(f"utt-{n}")
        # timings in seconds from the utterance's own start, as the service gave them, every word numbered alike
        _, words = synthesize(strip_tags(line), 8000)
        timed = [w for f in mine if isinstance(f, WordTimings) for w in f.words]
        assert [(w.text, w.start, w.end) for w in timed] == [(s.text, s.start / 8000, s.end / 8000) for s in words]
        assert [w.text for w in timed if is_spoken(w.text)] == list(read_script(line).words)
        # while the audio's pts run on across utterances
        assert next(f for f in mine if isinstance(f, AudioChunk)).pts == pts
        pts += len(audio_of(strip_tags(line), PCM8))
    assert out.audio().size == pts


async def test_a_dropped_connection_resumes_on_a_new_context_from_the_lost_word():
    text = "One two three four five six seven eight nine ten."
    with trio.fail_after(20):
        async with tts_server(rtf=50, first_byte_latency=0, disconnect_after=20) as (url, server):
            source = CartesiaTTS(url=url, transcript=text, sample_rate=8000, backoff_initial=0.01, backoff_max=0.05)
            out = await run_stage(source)
            await trio.testing.wait_all_tasks_blocked()
            report = server.report()
    stats = out.report.stages[0].statistics
    assert stats["connects"] >= 2 and stats["resumes"] == stats["connects"] - 1 == report["net_disconnected"]
    assert stats["utterances_failed"] == 0
    timed = [w.text for f in out.events if isinstance(f, WordTimings) for w in f.words]
    assert timed == text.split()  # every word timed once, in order: resumed from the first unfinished word
    words = [w for f in out.events if isinstance(f, WordTimings) for w in f.words]
    assert all(a.end <= b.start for a, b in itertools.pairwise(words))
    assert out.audio().size / 8000 >= words[-1].end


async def test_an_error_reply_resumes_on_the_same_connection():
    with trio.fail_after(15):
        async with tts_server(rtf=50, first_byte_latency=0, error_after=8) as (url, _):
            out = await run_stage(
                CartesiaTTS(url=url, transcript="One two three four five six.", sample_rate=8000, backoff_initial=0.01)
            )
    stats = out.report.stages[0].statistics
    assert stats["service_errors"] == {"internal_error": 1} and stats["connects"] == 1 and stats["contexts"] == 2
    assert [w.text for f in out.events if isinstance(f, WordTimings) for w in f.words] == [
        "One",
        "two",
        "three",
        "four",
        "five",
        "six.",
    ]


async def test_a_refused_key_fails_the_stage_with_the_status():
    from rtstream.simulators.services import TtsService

    service = TtsService(api_key="right", rtf=50)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(service.serve, "127.0.0.1", 0)
            url = service.endpoints("127.0.0.1", port)["url"]
            out = await run_stage(CartesiaTTS(url=url, transcript="Hi.", api_key="right", sample_rate=8000))
            assert out.chunks
            with pytest.raises(StageFailed, match=r"ConnectFailed: ws://127\.0\.0\.1:\d+: refused with HTTP 401$"):
                await run_stage(CartesiaTTS(url=url, transcript="Hi.", api_key="wrong", sample_rate=8000))
            nursery.cancel_scope.cancel()


async def test_a_service_that_stops_answering_times_out_and_fails_the_stage():
    import functools

    from rtstream.simulators.websocket import serve

    async def silent(ws):
        await trio.sleep_forever()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(functools.partial(serve, upgrading(silent), "127.0.0.1", 0))
            source = CartesiaTTS(
                url=f"ws://127.0.0.1:{port}/tts/websocket",
                transcript="Hi.",
                response_timeout=0.2,
                reconnect_attempts=1,
                backoff_initial=0.01,
            )
            with pytest.raises(
                StageFailed,
                match=rf"^pipeline 'test', stage 1 \(cartesia_tts\) failed: LinkFailed: ws://127\.0\.0\.1:{port}: "
                r"no answer within 0\.2 s; gave up after 2 failed attempts in a row$",
            ):
                await run_stage(source)
            nursery.cancel_scope.cancel()
