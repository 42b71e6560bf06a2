"""data_prep.sentences: the rule-based sentence splitter behind the sentence index."""

from __future__ import annotations

import random

import pytest

from data_prep.sentences import SPLITTER_NAME, sentence_spans, split_sentences


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Dr. Smith went home. He was tired.", ["Dr. Smith went home.", "He was tired."]),
        ("Mr. and Mrs. Bennet had five daughters.", ["Mr. and Mrs. Bennet had five daughters."]),
        ("Is it? Yes! It is... Then it ended.", ["Is it?", "Yes!", "It is...", "Then it ended."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ('"Stop!" he said. "Why?" She ran.', ['"Stop!" he said.', '"Why?"', "She ran."]),
        ("It rained (a lot.) The end.", ["It rained (a lot.)", "The end."]),
        ("The value is 3.5 m. It grew.", ["The value is 3.5 m.", "It grew."]),
        (
            "J. R. R. Tolkien wrote it. George W. Bush read it.",
            ["J. R. R. Tolkien wrote it.", "George W. Bush read it."],
        ),
        ("Roe v. Wade was decided.", ["Roe v. Wade was decided."]),
        ("Use e.g. The Times or i.e. Le Monde.", ["Use e.g. The Times or i.e. Le Monde."]),
        ("Built c. 513 BC. It stands.", ["Built c. 513 BC.", "It stands."]),
        ("He was ranked No. 1 in the world.", ["He was ranked No. 1 in the world."]),
        ("See Fig. 3 and pp. 12-14 for details.", ["See Fig. 3 and pp. 12-14 for details."]),
        ("Relieved by Brig. Gen. Don Carlos Buell on time.", ["Relieved by Brig. Gen. Don Carlos Buell on time."]),
        ("The U.S. Army came. It won.", ["The U.S. Army came.", "It won."]),
        ("He moved to the U.S. The war began.", ["He moved to the U.S.", "The war began."]),
        ("He lives on St. Mark's Place.", ["He lives on St. Mark's Place."]),
        ("Apples, pears, etc. The rest is fruit.", ["Apples, pears, etc.", "The rest is fruit."]),
        ("Apples, pears, etc. and so on.", ["Apples, pears, etc. and so on."]),
        ("Smith et al. Found it.", ["Smith et al. Found it."]),
        ("It was founded in 1990. 2001 was a good year.", ["It was founded in 1990.", "2001 was a good year."]),
        ("As told (Hdt. 1.202.4) before.", ["As told (Hdt. 1.202.4) before."]),
        ("It ended at 5 p.m. The crowd left.", ["It ended at 5 p.m.", "The crowd left."]),
        ("What do you want? asked the man.", ["What do you want? asked the man."]),
        ("So did I. Then we left.", ["So did I.", "Then we left."]),
        ("He left the wilderness. ¶ And the king came.", ["He left the wilderness.", "¶ And the king came."]),
        ("\u201cWhy?\u201d \u201cBecause.\u201d", ["\u201cWhy?\u201d", "\u201cBecause.\u201d"]),
        ("No terminal punctuation here", ["No terminal punctuation here"]),
        ("Ends with a period.", ["Ends with a period."]),
        ("  padded.  Twice.  ", ["padded.", "Twice."]),
        ("", []),
        ("   ", []),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


def _check_exact(paragraph: str) -> None:
    spans = sentence_spans(paragraph)
    pieces = split_sentences(paragraph)
    assert pieces == [paragraph[a:b] for a, b in spans]
    if not paragraph.strip():
        assert spans == []
        return
    assert spans[0][0] == len(paragraph) - len(paragraph.lstrip())
    assert spans[-1][1] == len(paragraph.rstrip())
    for (a, b), (c, _) in zip(spans, spans[1:], strict=False):
        assert a < b <= c and paragraph[b:c].isspace()
    for piece in pieces:
        assert piece and piece == piece.strip()
    # the exact rejoin: slices plus the whitespace between them give the paragraph back
    rejoined = paragraph[: spans[0][0]]
    for k, (a, b) in enumerate(spans):
        rejoined += paragraph[a:b] + (paragraph[b : spans[k + 1][0]] if k + 1 < len(spans) else paragraph[b:])
    assert rejoined == paragraph
    if " ".join(paragraph.split()) == paragraph:
        assert " ".join(pieces) == paragraph  # what the pipeline sees: normalized single spaces


def test_pieces_rejoin_exactly_on_random_text() -> None:
    rng = random.Random(0)
    atoms = [
        "Mr.",
        "Dr.",
        "U.S.",
        "e.g.",
        "etc.",
        "No.",
        "3.5",
        "1990.",
        "J.",
        "I.",
        "...",
        "\u2026",
        "?!",
        "!",
        "?",
        ".",
        '"',
        "'",
        "(",
        ")",
        "[",
        "]",
        "\u201c",
        "\u201d",
        "\u00b6",
        "The",
        "the",
        "He",
        "it",
        "Apple",
        "x",
        "A",
        "a.m.",
        "Ph.D.",
        "Hdt.",
        "12",
        "é",
        "Ünder",
        "\t",
        "  ",
    ]
    for _ in range(3000):
        words = [rng.choice(atoms) for _ in range(rng.randint(0, 25))]
        seps = [rng.choice([" ", "", "  ", "\t"]) for _ in words]
        paragraph = "".join(w + s for w, s in zip(words, seps, strict=True))
        _check_exact(paragraph)


def test_real_prose_rejoins_and_splits() -> None:
    text = (
        "Anarchism is a political philosophy that advocates self-governed societies. These are often "
        "described as stateless societies, although several authors (e.g. Smith, Jones, etc.) have "
        'defined them more specifically. In the U.S. Army, Gen. Grant said "Go!" and they went. '
        "It was 3.5 km away... Nobody knew why? Mrs. Dashwood replied: \u201cNever.\u201d The end."
    )
    pieces = split_sentences(text)
    assert pieces == [
        "Anarchism is a political philosophy that advocates self-governed societies.",
        "These are often described as stateless societies, although several authors (e.g. Smith, Jones, etc.) "
        "have defined them more specifically.",
        'In the U.S. Army, Gen. Grant said "Go!" and they went.',
        "It was 3.5 km away...",
        "Nobody knew why?",
        "Mrs. Dashwood replied: \u201cNever.\u201d",
        "The end.",
    ]
    _check_exact(text)


def test_splitter_name_is_versioned() -> None:
    assert SPLITTER_NAME == "megagrow-rules-1"
