"""What a transcript asks for at each word boundary."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtstream.markup import Mark, MarkupError
from rtstream.stages.pause_breath.script import classify, read_script


def test_punctuation_and_tags_land_on_their_boundaries():
    script = read_script(
        "Hello, [breath] how are you? [pause 300ms] I am [emphasis] fine; thanks: really! Well… ok. [sigh]"
    )
    assert script.words == ("Hello,", "how", "are", "you?", "I", "am", "fine;", "thanks:", "really!", "Well…", "ok.")
    assert script.punctuation == (
        None,
        "comma",
        None,
        None,
        "question",
        None,
        None,
        "semicolon",
        "colon",
        "exclamation",
        "sentence",
        "period",
    )
    assert script.marks[1] == (Mark("breath", 1, 7, breath_type="normal"),)
    assert script.marks[4] == (Mark("pause", 4, 29, seconds=0.3),)
    assert script.marks[6] == (Mark("emphasis", 6, 48),)
    assert script.marks[11] == (Mark("breath", 11, 91, breath_type="sigh"),)
    assert sum(len(m) for m in script.marks) == 4


def test_a_dash_between_spaces_is_punctuation_not_a_word():
    script = read_script("Wait — [emphasis] what? One – two -- three - four")
    assert script.words == ("Wait", "what?", "One", "two", "three", "four")
    assert script.punctuation == (None, "dash", "question", "dash", "dash", "dash", None)
    assert [m.kind for m in script.marks[1]] == ["emphasis"]  # bound to "what?", whose boundary holds the dash


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Dr. Smith", None),
        ("Mr. Jones", None),
        ("e.g. this", None),
        ("the U.S. Army", None),
        ("J. Smith", None),
        ("etc. and more", None),
        ("so do I. Then", "period"),
        ("It costs 3.5. Then", "period"),
        ('he said "stop." Then', "period"),
        ("(quietly.) Then", "period"),
        ("Really?! Yes", "question"),
        ("wow!!! Yes", "exclamation"),
        ("and so... Yes", "sentence"),
        ("end。 next", "sentence"),
        ("a, b", "comma"),
        ("well-known fact", None),
        ('"quoted," he', "comma"),
    ],
)
def test_classification(text, reason):
    script = read_script(text)
    assert reason in script.punctuation[1:-1] or (reason is None and set(script.punctuation) == {None})


def test_trailing_punctuation_has_a_reason_but_follows_the_last_word():
    script = read_script("All done.")
    assert script.punctuation == (None, None, "period")  # the stage inserts nothing after the last word
    assert classify("done.", ".", None) == "period"
    assert classify("Dr.", ".", None) is None


def test_tags_only_and_empty_text():
    assert read_script("").words == ()
    script = read_script("[breath]")
    assert script.words == () and script.punctuation == (None,) and script.marks[0][0].kind == "breath"


def test_malformed_tags_are_refused_with_their_position():
    with pytest.raises(MarkupError, match=r"^unknown tag .*: '\[laugh\]' at character 6$"):
        read_script("Hello [laugh] there")


@given(st.lists(st.sampled_from(["word", "two,", "end.", "—", "[breath]", "[pause 1s]", "Q?"]), max_size=25))
def test_every_mark_binds_to_a_boundary_of_the_spoken_words(tokens):
    script = read_script(" ".join(tokens))
    spoken = [t for t in tokens if not t.startswith("[") and t != "—"]
    assert list(script.words) == spoken
    assert len(script.punctuation) == len(script.marks) == len(spoken) + 1
    expected, seen = [], 0
    for token in tokens:
        if token.startswith("["):
            expected.append(seen)
        elif token != "—":
            seen += 1
    assert [k for k, marks in enumerate(script.marks) for _ in marks] == expected
