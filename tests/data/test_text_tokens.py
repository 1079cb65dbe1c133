import pytest

from asrc.core.tables import read_tokens, write_tokens
from asrc.data.text import is_normalized, normalize_or_raise, normalize_text, number_to_words
from asrc.data.tokens import (
    FAIRSEQ_LETTERS,
    bpe_tokens,
    letter_tokens,
    letters_to_text,
    text_to_letters,
    token_characters,
    tokens_to_ids,
    train_bpe,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Hello, world!", "HELLO WORLD"),
        ("  don't   STOP  ", "DON'T STOP"),
        ("It’s James' book; 'quoted'", "IT'S JAMES' BOOK QUOTED"),
        ("Café naïve", "CAFE NAIVE"),
        ("route 66", "ROUTE SIXTY SIX"),
        ("the 1st and 22nd of 1,000", "THE FIRST AND TWENTY SECOND OF ONE THOUSAND"),
        ("3.5% rise", "THREE POINT FIVE PERCENT RISE"),
        ("rock&roll", "ROCK AND ROLL"),
        ("well-known/used", "WELL KNOWN USED"),
        ("HE'S GOING TO THE STATION", "HE'S GOING TO THE STATION"),
    ],
)
def test_normalize_text(raw, expected):
    assert normalize_text(raw) == expected
    assert is_normalized(expected)


def test_normalization_never_hides_an_empty_result():
    assert normalize_text("... !!! $") == ""
    with pytest.raises(ValueError, match="utt-7.*empty after normalisation"):
        normalize_or_raise("...", "utt-7")
    assert not is_normalized("") and not is_normalized("HELLO  WORLD") and not is_normalized("hello")


def test_number_to_words():
    assert number_to_words(0) == "ZERO"
    assert number_to_words(15) == "FIFTEEN"
    assert number_to_words(40) == "FORTY"
    assert number_to_words(101) == "ONE HUNDRED ONE"
    assert number_to_words(1204) == "ONE THOUSAND TWO HUNDRED FOUR"
    assert number_to_words(2_000_019) == "TWO MILLION NINETEEN"
    with pytest.raises(ValueError):
        number_to_words(-1)


def test_letter_tokens_match_fairseq_indices():
    tokens = letter_tokens()
    assert len(tokens) == 32 and tokens == list(FAIRSEQ_LETTERS)
    # fairseq: <s>=0 (our <blank>), <pad>=1, </s>=2, <unk>=3, then dict.ltr.txt order.
    assert tokens[:5] == ["<blank>", "<pad>", "</s>", "<unk>", "|"]
    assert "".join(tokens[5:]) == "ETAONIHSRDLUMWCFGYPBVK'XJQZ"
    assert tokens.index("E") == 5 and tokens.index("Z") == 31 and tokens.index("'") == 27
    with_eos = letter_tokens(sos_eos=True)
    assert with_eos[:32] == tokens and with_eos[32] == "<sos/eos>"


def test_letters_round_trip():
    assert text_to_letters("HELLO WORLD") == "H E L L O | W O R L D"
    assert letters_to_text("H E L L O | W O R L D") == "HELLO WORLD"
    assert letters_to_text(["|", "A", "|", "|", "B", "'", "S", "|"]) == "A B'S"
    ids = tokens_to_ids(text_to_letters("DON'T").split(), letter_tokens())
    assert ids == [14, 8, 9, 27, 6]
    assert tokens_to_ids(["%"], letter_tokens()) == [3]  # <unk>
    with pytest.raises(ValueError, match="'%'"):
        tokens_to_ids(["%"], ["<blank>", "A"], unk=None)
    with pytest.raises(ValueError, match="word boundary"):
        text_to_letters("A|B")


def test_write_read_tokens(tmp_path):
    path = tmp_path / "tokens.txt"
    write_tokens(path, letter_tokens(sos_eos=True))
    lines = path.read_text().split("\n")
    assert lines[0] == "<blank>" and lines[4] == "|" and lines[32] == "<sos/eos>" and lines[33] == ""
    assert read_tokens(path) == letter_tokens(sos_eos=True)
    with pytest.raises(ValueError, match="'A' appears at index 1 and 2"):
        write_tokens(tmp_path / "bad.txt", ["<blank>", "A", "A"])
    with pytest.raises(ValueError, match="whitespace"):
        write_tokens(tmp_path / "bad.txt", ["<blank>", "A B"])
    (tmp_path / "dup.txt").write_text("<blank>\nA\nA\n")
    with pytest.raises(ValueError, match="dup.txt"):
        read_tokens(tmp_path / "dup.txt")


def test_token_characters():
    assert token_characters(letter_tokens()) == set("ETAONIHSRDLUMWCFGYPBVK'XJQZ ")
    assert token_characters(["<blank>", "<unk>", "\u2581TH", "E", "<sos/eos>"]) == {" ", "T", "H", "E"}


def test_bpe_token_list(tmp_path):
    text = tmp_path / "text"
    words = "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE".split()
    text.write_text("".join(f"utt{i:03d} {' '.join(words[i % 12:] + words[: i % 5])}\n" for i in range(200)))
    with pytest.raises(ValueError, match="text.*Vocabulary size too high"):
        train_bpe(text, tmp_path / "bpe" / "bpe400", vocab_size=400, has_ids=True)
    model = train_bpe(text, tmp_path / "bpe" / "bpe30", vocab_size=30, has_ids=True)
    assert model.is_file() and model.name == "bpe30.model"
    tokens = bpe_tokens(model)
    assert tokens[0] == "<blank>" and tokens[1] == "<unk>" and tokens[-1] == "<sos/eos>"
    assert len(tokens) == 30 - 1 + 3  # model pieces without its <unk>, plus <blank>, <unk>, <sos/eos>
    assert len(set(tokens)) == len(tokens)
    assert not any(t.startswith("utt") for t in tokens)  # ids were stripped
    assert set("ONETWHR") <= token_characters(tokens)
    write_tokens(tmp_path / "tokens.txt", tokens)
    assert read_tokens(tmp_path / "tokens.txt") == tokens
