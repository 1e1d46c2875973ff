import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtstream.markup import Mark, MarkupError, parse, strip_tags


def test_tags_are_stripped_and_bound_to_the_next_word():
    markup = parse('Hello, [breath] how are you? [pause 300ms][sigh] I am [emphasis] fine. [breath type="deep"]')
    assert markup.text == "Hello, how are you? I am fine."
    assert markup.marks == (
        Mark("breath", 1, 7, breath_type="normal"),
        Mark("pause", 4, 29, seconds=0.3),
        Mark("breath", 4, 42, breath_type="sigh"),
        Mark("emphasis", 6, 54),
        Mark("breath", 7, 71, breath_type="deep"),
    )


def test_glued_tags_and_literal_brackets():
    markup = parse("one,[pause 1.5s] two [[three]] four[breath]")
    assert markup.text == "one, two [three] four"
    assert [(m.kind, m.word, m.seconds) for m in markup.marks] == [("pause", 1, 1.5), ("breath", 4, None)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hi [laugh] there", r"^unknown tag \(known: breath, sigh, pause, emphasis\): '\[laugh\]' at character 3$"),
        (
            "hi [pause] there",
            r"^malformed pause tag \(write \[pause 300ms\] or \[pause 1.5s\]\): '\[pause\]' at character 3$",
        ),
        (
            "hi [pause 20s] there",
            r"^pause length must be more than 0 and at most 10 s: '\[pause 20s\]' at character 3$",
        ),
        ("hi [pause 0ms] there", r"^pause length must be more than 0 and at most 10 s"),
        (
            '[breath type="yawn"] hi',
            r"^unknown breath type \(use one of normal, deep, quick, sigh\): '\[breath type=\"yawn\"\]' at character 0$",
        ),
        ("[breath type=deep] hi", r"^malformed breath tag"),
        ("[sigh loudly] hi", r"^unknown tag"),
        (
            "hi [pause 300ms there",
            r"^unbalanced bracket \(write \[\[ or \]\] for a literal one\): '\[' at character 3$",
        ),
        ("hi ] there", r"^unbalanced bracket .*: '\]' at character 3$"),
        ("hel[breath]lo", r"^a tag cannot stand inside a word: '\[breath\]' at character 3$"),
    ],
)
def test_malformed_tags_are_named_with_their_position(text, message):
    with pytest.raises(MarkupError, match=message):
        parse(text)


@given(st.text(alphabet=st.sampled_from("abc ,.!?\n"), max_size=60))
def test_plain_text_only_normalises_whitespace(text):
    assert strip_tags(text) == " ".join(text.split())
    assert parse(text).marks == ()


@given(st.lists(st.sampled_from(["word", "other,", "end.", "[breath]", "[pause 200ms]", "[sigh]"]), max_size=20))
def test_mark_word_indices_point_at_the_following_word(tokens):
    markup = parse(" ".join(tokens))
    words = [t for t in tokens if not t.startswith("[")]
    assert markup.text.split() == words
    expected = []
    seen = 0
    for token in tokens:
        if token.startswith("["):
            expected.append(seen)
        else:
            seen += 1
    assert [m.word for m in markup.marks] == expected


def test_a_markup_error_keeps_its_parts_for_callers_that_add_context():
    with pytest.raises(MarkupError) as caught:
        parse("one [pause 0s] two")
    assert (caught.value.message, caught.value.tag, caught.value.position) == (
        "pause length must be more than 0 and at most 10 s",
        "[pause 0s]",
        4,
    )
