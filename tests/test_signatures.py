"""Request signatures, checked against the providers' own validators (test-only SDKs)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from plivo.utils.signature_v3 import validate_v3_signature
from twilio.request_validator import RequestValidator

from rtstream.signatures import plivo_v3_signature, plivo_v3_valid, twilio_signature, twilio_valid

TOKEN = "12345"
names = st.text(alphabet=st.characters(categories=("L", "N"), max_codepoint=0x2FF), min_size=1, max_size=8)
values = st.text(alphabet=st.characters(categories=("L", "N", "P", "Zs"), max_codepoint=0x2FF), max_size=12)
forms = st.dictionaries(names, values, max_size=6)
urls = st.sampled_from(
    ["https://bot.example.com/twilio", "https://bot.example.com:8443/answer?x=1&a=2", "wss://bot.example.com/media"]
)


def test_twilio_documented_example() -> None:
    params = {"CallSid": ["CA1234567890ABCDE"], "Caller": ["+12349013030"], "Digits": ["1234"]}
    params |= {"From": ["+12349013030"], "To": ["+18005551212"]}
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature(url, params, TOKEN) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


@given(url=urls, form=forms)
def test_twilio_signature_matches_the_official_validator(url: str, form: dict[str, str]) -> None:
    params = {k: [v] for k, v in form.items()}
    signature = RequestValidator(TOKEN).compute_signature(url, form)
    assert twilio_signature(url, params, TOKEN) == signature
    assert twilio_valid(url, params, TOKEN, signature)
    assert not twilio_valid(url, params, TOKEN + "x", signature)
    assert not twilio_valid(url, params, TOKEN, None)


def test_twilio_accepts_the_url_with_or_without_its_default_port() -> None:
    signed = twilio_signature("https://bot.example.com/twilio", {}, TOKEN)
    assert twilio_valid("https://bot.example.com:443/twilio", {}, TOKEN, signed)
    assert twilio_valid(
        "https://bot.example.com/twilio", {}, TOKEN, twilio_signature("https://bot.example.com:443/twilio", {}, TOKEN)
    )
    assert not twilio_valid("https://bot.example.com:8443/twilio", {}, TOKEN, signed)


plivo_urls = st.sampled_from(["https://bot.example.com/plivo", "https://bot.example.com:8443/answer?x=1&a=2"])


@given(
    url=plivo_urls,
    form=forms,
    method=st.sampled_from(["GET", "POST"]),
    nonce=st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=20),
)
def test_plivo_v3_matches_the_official_validator(url: str, form: dict[str, str], method: str, nonce: str) -> None:
    params = {k: [v] for k, v in form.items()}
    signature = plivo_v3_signature(method, url, params, nonce, TOKEN)
    assert validate_v3_signature(method, url, nonce, TOKEN, signature, dict(form))
    assert plivo_v3_valid(method, url, params, nonce, TOKEN, f"bogus, {signature}")
    assert not plivo_v3_valid(method, url, params, nonce + "x", TOKEN, signature)
    assert not plivo_v3_valid(method, url, params, None, TOKEN, signature)
