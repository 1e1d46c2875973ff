"""Answer documents parse as XML/JSON and carry the stream URL and parameters, escaped."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from rtstream.answers import exotel_stream, plivo_stream, twiml_stream

URL = "wss://bot.example.com/twilio?route=a&b=<c>"
PARAMS = {"caller": 'A "quoted" & <tagged> name', "lang": "en"}


def test_twiml_connects_a_stream_with_its_parameters() -> None:
    root = ET.fromstring(twiml_stream(URL, PARAMS))
    stream = root.find("./Connect/Stream")
    assert root.tag == "Response" and stream is not None
    assert stream.get("url") == URL
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == PARAMS


def test_plivo_streams_bidirectionally_and_keeps_the_call_alive() -> None:
    root = ET.fromstring(plivo_stream(URL, {"lang": "en", "id": "7"}, content_type="audio/x-mulaw;rate=8000"))
    stream = root.find("Stream")
    assert stream is not None and stream.text == URL
    assert stream.attrib == {
        "bidirectional": "true",
        "keepCallAlive": "true",
        "contentType": "audio/x-mulaw;rate=8000",
        "extraHeaders": "lang=en,id=7",
    }


def test_exotel_answers_with_the_url() -> None:
    assert json.loads(exotel_stream(URL, PARAMS)) == {"url": URL, "custom_parameters": PARAMS}
