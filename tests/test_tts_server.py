"""The TTS simulator over a real loopback socket."""

import functools
import json

import pytest
import trio
import trio.testing
from sims import tts_server
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from rtstream.simulators.tts import TtsServer, TtsSettings, serve_tts

REQUEST = {
    "model_id": "sonic-3",
    "voice": {"mode": "id", "id": "v"},
    "add_timestamps": True,
    "output_format": {"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000},
}


def req(transcript, context_id="c1", **extra):
    return json.dumps({**REQUEST, "transcript": transcript, "context_id": context_id, **extra})


async def until_done(ws, context_id="c1"):
    got = []
    while True:
        m = json.loads(await ws.get_message())
        got.append(m)
        if m.get("done") and m.get("context_id") == context_id:
            return got


async def test_a_conversation_with_malformed_requests_in_between():
    with trio.fail_after(10):
        async with tts_server(rtf=0, first_byte_latency=0) as (url, server), open_websocket_url(url) as ws:
            await ws.send_message("{bad")
            error = json.loads(await ws.get_message())
            assert (error["type"], error["error_code"], error["status_code"]) == ("error", "invalid_json", 400)
            await ws.send_message(req("Hello world."))
            got = await until_done(ws)
            assert {m["type"] for m in got} == {"chunk", "timestamps", "done"}
        await trio.testing.wait_all_tasks_blocked()
        report = server.report()
        assert report["connections"] == 1 and report["errors_sent"] == {"invalid_json": 1}


async def test_unknown_path_and_missing_key_are_refused():
    with trio.fail_after(10):
        settings = TtsSettings()
        server = TtsServer(settings, api_key="s3cret")
        async with trio.open_nursery() as nursery:
            port = await nursery.start(functools.partial(serve_tts, settings, "127.0.0.1", 0, server=server))
            with pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(f"ws://127.0.0.1:{port}/elsewhere"):
                    pass
            assert refused.value.status_code == 404
            with pytest.raises(ConnectionRejected) as refused:
                async with open_websocket_url(
                    f"ws://127.0.0.1:{port}/tts/websocket?api_key=wrong&cartesia_version=2026-03-01"
                ):
                    pass
            assert refused.value.status_code == 401
            async with open_websocket_url(
                f"ws://127.0.0.1:{port}/tts/websocket",
                extra_headers=[(b"X-API-Key", b"s3cret"), (b"Cartesia-Version", b"2026-03-01")],
            ) as ws:
                await ws.send_message(req("Hi."))
                assert (await until_done(ws))[-1]["type"] == "done"
            nursery.cancel_scope.cancel()


async def test_concurrency_limit_across_connections():
    with trio.fail_after(10):
        async with (
            tts_server(rtf=0, first_byte_latency=0, max_contexts=1) as (url, _),
            open_websocket_url(url) as a,
            open_websocket_url(url) as b,
        ):
            await a.send_message(req("Hold ", context_id="a", **{"continue": True}))
            await trio.testing.wait_all_tasks_blocked()  # the server has taken context a
            await b.send_message(req("Me.", context_id="b"))
            error = json.loads(await b.get_message())
            assert (error["status_code"], error["error_code"], error["context_id"]) == (
                429,
                "concurrency_limited",
                "b",
            )


async def test_disconnect_after_n_chunks_closes_with_1011():
    with trio.fail_after(10):
        async with (
            tts_server(rtf=0, first_byte_latency=0, disconnect_after=3) as (url, _),
            open_websocket_url(url) as ws,
        ):
            await ws.send_message(req("A long enough sentence here."))
            chunks = 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    chunks += json.loads(await ws.get_message())["type"] == "chunk"
            assert chunks == 3 and closed.value.reason.code == 1011


async def test_impairments_are_deterministic_over_the_socket():
    async def conversation():
        async with (
            tts_server(rtf=20, first_byte_latency=0, drop=0.1, duplicate=0.1, reorder=0.1, jitter=0.005, seed=9) as (
                url,
                _,
            ),
            open_websocket_url(url) as ws,
        ):
            await ws.send_message(req("A long enough sentence to be impaired in a few ways."))
            return [(m["type"], m.get("seq")) for m in await until_done(ws)]

    with trio.fail_after(10):
        first = await conversation()
        assert first == await conversation()
        seqs = [s for t, s in first if t == "chunk"]
        assert seqs != list(range(len(seqs)))
