"""Token lists for CTC: fairseq-compatible letters and sentencepiece BPE.

A token list is a Python list of strings whose index is the output row of the CTC head;
on disk it is ``tokens.txt`` (:func:`asrc.core.tables.write_tokens` /
:func:`asrc.core.tables.read_tokens`). Index 0 is always ``<blank>``, the CTC blank.

Letters (:data:`FAIRSEQ_LETTERS`): the 32 symbols of fairseq's ``dict.ltr.txt`` in fairseq's
index order, so the head of a converted fairseq or Hugging Face wav2vec 2.0 CTC teacher keeps
its meaning row by row::

    0 <blank>  1 <pad>  2 </s>  3 <unk>  4 |  5 E  6 T  7 A ... 31 Z

fairseq calls index 0 ``<s>`` and uses it as the CTC blank (Hugging Face calls it ``<pad>``);
asrc names it ``<blank>`` as ESPnet does. ``|`` is the word boundary: a transcript is written
``H E L L O | W O R L D`` (:func:`text_to_letters`), one token per space-separated field,
which is how ESPnet's ``word`` token type reads it.

ESPnet looks up ``<sos/eos>`` by name and otherwise uses the last index as sos/eos, which
matters only when an attention decoder is trained. :func:`letter_tokens` therefore appends
``<sos/eos>`` at index 32 on request (``sos_eos=True``): indices 0-31 stay fairseq's.
:func:`bpe_tokens` follows ESPnet's own layout: ``<blank>``, ``<unk>``, the pieces,
``<sos/eos>`` last.
"""

import tempfile
from pathlib import Path

from asrc.core.constants import BLANK, SOS_EOS, UNK, WORD_BOUNDARY

__all__ = [
    "BLANK",
    "UNK",
    "SOS_EOS",
    "WORD_BOUNDARY",
    "FAIRSEQ_LETTERS",
    "letter_tokens",
    "text_to_letters",
    "letters_to_text",
    "tokens_to_ids",
    "train_bpe",
    "bpe_tokens",
    "token_characters",
]

#: fairseq ``dict.ltr.txt`` order after the four special symbols fairseq's Dictionary prepends.
FAIRSEQ_LETTERS = (BLANK, "<pad>", "</s>", UNK, WORD_BOUNDARY) + tuple("ETAONIHSRDLUMWCFGYPBVK'XJQZ")


def letter_tokens(sos_eos: bool = False) -> list:
    """The fairseq-compatible letter token list (32 tokens, or 33 with ``<sos/eos>`` last)."""
    return list(FAIRSEQ_LETTERS) + ([SOS_EOS] if sos_eos else [])


def text_to_letters(text: str) -> str:
    """``"HELLO WORLD"`` -> ``"H E L L O | W O R L D"`` (no leading/trailing ``|``).

    ``text`` must be normalised (:func:`asrc.data.text.normalize_text`); a ``|`` in it is an
    error because it would be read back as a word boundary.
    """
    if WORD_BOUNDARY in text:
        raise ValueError(f"text_to_letters: {text!r} contains the word boundary {WORD_BOUNDARY!r}")
    return " | ".join(" ".join(word) for word in text.split())


def letters_to_text(letters) -> str:
    """Inverse of :func:`text_to_letters`; ``letters`` is a string or a sequence of tokens.

    Repeated or leading/trailing ``|`` collapse (CTC output may have them).
    """
    tokens = letters.split() if isinstance(letters, str) else list(letters)
    words, current = [], []
    for token in tokens:
        if token == WORD_BOUNDARY:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(token)
    if current:
        words.append("".join(current))
    return " ".join(words)


def tokens_to_ids(tokens, token_list, unk: str = UNK) -> list:
    """Indices of ``tokens`` in ``token_list``; unknown tokens map to ``unk``.

    Raises ``ValueError`` naming the token if it is unknown and ``unk`` is ``None`` or absent.
    """
    index = {token: i for i, token in enumerate(token_list)}
    unk_id = index.get(unk) if unk is not None else None
    ids = []
    for token in tokens:
        i = index.get(token, unk_id)
        if i is None:
            raise ValueError(f"token {token!r} is not in the token list and there is no {unk!r}")
        ids.append(i)
    return ids


def train_bpe(
    text_file,
    model_prefix,
    vocab_size: int,
    model_type: str = "unigram",
    has_ids: bool = False,
    character_coverage: float = 1.0,
    input_sentence_size: int = 10_000_000,
):
    """Train a sentencepiece model on ``text_file``, one normalised transcript per line.

    With ``has_ids`` the file is a Kaldi ``text`` file (``utt-id TRANSCRIPT``) and the first
    field of each line is dropped. Writes ``<model_prefix>.model`` and ``.vocab`` and returns
    the ``.model`` path. The model has ``<unk>`` (id 0) and no ``<s>``/``</s>``, as ESPnet
    trains them; ``vocab_size`` counts ``<unk>`` and sentencepiece raises if the text is too
    small for it.
    """
    import sentencepiece as spm

    text_file = Path(text_file)
    if not text_file.is_file():
        raise FileNotFoundError(f"train_bpe: no text file {text_file}")
    model_prefix = Path(model_prefix)
    model_prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_prefix.parent) as tmp:
        source = text_file
        if has_ids:
            source = Path(tmp) / "transcripts.txt"
            with open(text_file, encoding="utf-8") as src, open(source, "w", encoding="utf-8") as dst:
                for line in src:
                    fields = line.rstrip("\n").split(" ", 1)
                    if len(fields) == 2 and fields[1].strip():
                        dst.write(fields[1] + "\n")
        try:
            spm.SentencePieceTrainer.train(
                input=str(source),
                model_prefix=str(model_prefix),
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                input_sentence_size=input_sentence_size,
                shuffle_input_sentence=True,
                unk_id=0,
                bos_id=-1,
                eos_id=-1,
                pad_id=-1,
                minloglevel=2,
            )
        except RuntimeError as e:  # e.g. "Vocabulary size too high (40). Please set it to a value <= 33."
            raise ValueError(f"train_bpe on {text_file}: {e}") from None
    return Path(f"{model_prefix}.model")


def bpe_tokens(model_path, sos_eos: bool = True) -> list:
    """ESPnet-style token list of a sentencepiece model: ``<blank>``, ``<unk>``, pieces, ``<sos/eos>``.

    Pieces keep the model's order without its unknown/control symbols. ESPnet maps pieces to
    indices through this list by name, so the model's own ids do not matter.
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    pieces = [
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_unknown(i) or sp.is_control(i))
    ]
    return [BLANK, UNK] + pieces + ([SOS_EOS] if sos_eos else [])


def token_characters(token_list) -> set:
    """Characters a transcript may use under ``token_list`` (for validation).

    The characters of every non-special token, with sentencepiece's ``▁`` and the letter
    boundary ``|`` standing for the space. Special tokens (``<...>``) contribute nothing.
    """
    chars = set()
    for token in token_list:
        if token.startswith("<") and token.endswith(">") and len(token) > 2:
            continue
        if token == WORD_BOUNDARY:
            chars.add(" ")
            continue
        if "\u2581" in token:
            chars.add(" ")
            token = token.replace("\u2581", "")
        chars.update(token)
    return chars
