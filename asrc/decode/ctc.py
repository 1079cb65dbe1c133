"""CTC decoding: greedy search, and beam search with an optional lexicon and n-gram LM.

Both decoders take the CTC head's output ``logits[B, T', V]`` with ``lengths[B]`` and return one
:class:`Hypothesis` per utterance. The token list gives the meaning of each output index;
index 0 is the CTC blank (``<blank>``).

Token lists come in three flavours and :func:`tokens_to_text` reads all of them:

- letters (fairseq ``dict.ltr.txt`` order): ``|`` is the word boundary;
- ESPnet ``char`` lists: ``<space>`` is the word boundary;
- sentencepiece BPE: ``▁`` starts a word.

Special tokens ``<...>`` (``<blank>``, ``<pad>``, ``</s>``, ``<s>``, ``<sos/eos>``) carry no
text and are dropped; ``<unk>`` is the exception: a model that emits it did recognise *some*
word, so it is kept as the word ``<unk>`` and is scored as an error instead of vanishing.

Beam search is torchaudio's flashlight-text decoder (:func:`torchaudio.models.decoder.ctc_decoder`):

- lexicon mode (``lexicon=`` a file of ``WORD tok tok ... |`` lines, see
  :func:`write_letter_lexicon`): only lexicon words can be output; with ``lm=`` an ARPA (or
  KenLM binary) file of *word* n-grams, scored with ``lm_weight`` and ``word_score``;
- lexicon-free mode: any token sequence; an LM, if given, is over *tokens* (its vocabulary
  is the token list, e.g. a character n-gram for letter models).
"""

import gzip
import logging
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import torch

from asrc.core.constants import BLANK, UNK
from asrc.core.constants import WORD_BOUNDARY as LETTER_BOUNDARY
from asrc.core.files import is_gzip
from asrc.errors import AsrcError
from asrc.models.ctc import check_logits

logger = logging.getLogger(__name__)

#: Changes when the beam search gives other results for the same input (asrc-decode's job
#: fingerprint holds it, so earlier decodes are redone): 2, the closing word boundary of a
#: lexicon search (the last word was lost).
BEAM_SEARCH_VERSION = 2

CHAR_BOUNDARY = "<space>"
BPE_WORD_START = "\u2581"


def is_special(token: str) -> bool:
    """``<...>`` tokens other than ``<unk>`` and ``<space>``: they carry no text."""
    return len(token) > 2 and token.startswith("<") and token.endswith(">") and token not in (UNK, CHAR_BOUNDARY)


def tokens_to_text(tokens: Iterable[str]) -> str:
    """Join CTC output tokens into words.

    ``|`` and ``<space>`` become word boundaries, ``▁`` inside a token becomes a space,
    specials are dropped (see the module docstring), ``<unk>`` stays a word of its own;
    runs of boundaries collapse and the result has single spaces, none leading or trailing.

    >>> tokens_to_text(["H", "I", "|", "Y", "O", "U"])
    'HI YOU'
    >>> tokens_to_text(["\u2581HE", "LLO", "\u2581WORLD"])
    'HELLO WORLD'
    """
    pieces = []
    for t in tokens:
        if t in (LETTER_BOUNDARY, CHAR_BOUNDARY):
            pieces.append(" ")
        elif t == UNK:
            pieces.append(f" {UNK} ")
        elif is_special(t):
            continue
        else:
            pieces.append(t.replace(BPE_WORD_START, " "))
    return " ".join("".join(pieces).split())


def word_tokens(tokens: Sequence[str]) -> List[Tuple[str, List[int]]]:
    """The words of a token sequence as :func:`tokens_to_text` forms them, each with the
    indices of the tokens it is made of.

    >>> word_tokens(["H", "I", "|", "Y", "O", "U"])
    [('HI', [0, 1]), ('YOU', [3, 4, 5])]
    """
    out: List[Tuple[str, List[int]]] = []
    word, members = "", []

    def flush():
        nonlocal word, members
        if word:
            out.append((word, members))
        word, members = "", []

    for i, t in enumerate(tokens):
        if t in (LETTER_BOUNDARY, CHAR_BOUNDARY):
            flush()
        elif t == UNK:
            flush()
            out.append((UNK, [i]))
        elif is_special(t):
            continue
        else:
            for k, part in enumerate(t.replace(BPE_WORD_START, " ").split(" ")):
                if k:
                    flush()
                if part:
                    word += part
                    members.append(i)
    flush()
    return out


def word_spans(tokens: Sequence[str], frames: Sequence[Tuple[float, float]]) -> List[Tuple[str, float, float]]:
    """The words of a token sequence (:func:`word_tokens`), each with the span ``(first frame,
    end frame)`` of its tokens (``frames[i]`` is token ``i``'s ``(start, end)``).

    >>> word_spans(["H", "I", "|", "Y", "O", "U"], [(0, 1), (2, 3), (3, 4), (6, 7), (7, 9), (9, 10)])
    [('HI', 0, 3), ('YOU', 6, 10)]
    """
    return [(w, frames[m[0]][0], frames[m[-1]][1]) for w, m in word_tokens(tokens)]


def word_confidences(tokens: Sequence[str], confidences: Sequence[float]) -> List[Tuple[str, float]]:
    """The words of a token sequence (:func:`word_tokens`), each with the lowest confidence of
    its tokens (a word is as sure as its least sure letter).

    >>> word_confidences(["H", "I", "|", "Y", "O", "U"], [0.9, 0.5, 1.0, 0.99, 0.8, 0.95])
    [('HI', 0.5), ('YOU', 0.8)]
    """
    return [(w, min(confidences[i] for i in m)) for w, m in word_tokens(tokens)]


def timed_words(hyp: "Hypothesis", tokens: Sequence[str], frame_seconds: float,
                offset: float = 0.0) -> List[Tuple[str, float, float, float]]:
    """``(word, start, end, confidence)`` of each word of ``hyp``, times in seconds (its frames
    x ``frame_seconds``, plus ``offset``); confidence 1.0 where the decoder gave none. Empty when
    the hypothesis carries no frames. The words are the decoder's own (``hyp.words``: a lexicon
    search's words as its lexicon writes them, ``7`` spelled ``S E V E N``) where it gave one per
    spelled word, else the words the tokens spell, as in the text."""
    toks = [tokens[i] for i in hyp.ids]
    if len(hyp.frames) != len(toks):
        return []
    spans = word_spans(toks, hyp.frames)
    if hyp.words and len(hyp.words) == len(spans):
        spans = [(w, a, b) for w, (_, a, b) in zip(hyp.words, spans)]
    confs = ([c for _, c in word_confidences(toks, hyp.confidences)] if len(hyp.confidences) == len(toks)
             else [1.0] * len(spans))
    return [(w, offset + a * frame_seconds, offset + b * frame_seconds, c) for (w, a, b), c in zip(spans, confs)]


def ctm_line(name: str, word: str, start: float, end: float, confidence: float) -> str:
    """One Kaldi CTM line: ``NAME 1 START DURATION WORD CONFIDENCE`` (a name with spaces gets ``_``)."""
    return f"{'_'.join(name.split())} 1 {start:.2f} {end - start:.2f} {word} {confidence:.2f}\n"


@dataclass
class Hypothesis:
    """A decoding result: CTC output indices (repeats collapsed, blanks removed), text, score.

    ``score`` is the decoder's total score (acoustic log-probability plus weighted LM and word
    scores for beam search; the sum of the chosen frames' log-probabilities for greedy search).
    ``frames``: for each of ``ids``, the output frames ``(start, end)`` it was emitted in (greedy:
    its run of frames; beam search: the frame flashlight emitted it in, ``(t, t + 1)``); with
    :func:`word_spans` they time the words. ``confidences``: for each of ``ids``, the model's
    posterior of it (greedy: the highest over its run; beam search: at its frame); a word's
    confidence is the lowest of its tokens' (:func:`word_confidences`).
    """

    ids: List[int]
    text: str
    score: float = 0.0
    words: List[str] = field(default_factory=list)
    frames: List[Tuple[float, float]] = field(default_factory=list)
    confidences: List[float] = field(default_factory=list)


class GreedyDecoder:
    """Greedy CTC decoding into text with a token list (index 0 = blank)."""

    def __init__(self, tokens: Sequence[str], blank: int = 0):
        self.tokens = list(tokens)
        self.blank = blank

    def __call__(self, logits: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> List[Hypothesis]:
        """Decode ``logits[B, T', V]`` (``lengths[B]``) into one hypothesis per utterance."""
        lengths = check_logits(logits, lengths, len(self.tokens))
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        best_scores, _ = log_probs.max(dim=-1)  # [B, T']
        valid = torch.arange(logits.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
        totals = (best_scores.cpu() * valid).sum(dim=1)
        out = []
        best = logits.argmax(dim=-1).cpu()
        probs = log_probs.detach().cpu()
        for b in range(logits.shape[0]):
            runs = _token_runs(best[b, : int(lengths[b])], self.blank)  # the greedy ids, with their frames
            ids = [i for i, _, _ in runs]
            conf = [float(probs[b, a:e, i].max().exp()) for i, a, e in runs]
            out.append(Hypothesis(ids=ids, text=tokens_to_text(self.tokens[i] for i in ids), score=float(totals[b]),
                                  frames=[(a, e) for _, a, e in runs], confidences=conf))
        return out


def _token_runs(path: torch.Tensor, blank: int) -> List[Tuple[int, int, int]]:
    """``(id, start, end)`` of each non-blank run of a best path: the greedy output ids (repeats
    collapsed, blanks removed, as :func:`asrc.models.ctc.greedy_ids`) with their frames."""
    p = path.tolist()
    runs = []
    for t, i in enumerate(p):
        if i == blank:
            continue
        if t and p[t - 1] == i:
            runs[-1] = (i, runs[-1][1], t + 1)
        else:
            runs.append((i, t, t + 1))
    return runs


def word_boundary(tokens: Sequence[str]) -> Optional[str]:
    """The word-boundary token of a token list: ``|`` (letters), ``<space>`` (ESPnet chars), or
    None (BPE, whose words start with ``▁`` instead)."""
    for t in (LETTER_BOUNDARY, CHAR_BOUNDARY):
        if t in tokens:
            return t
    return None


def _sil_token(tokens: Sequence[str]) -> str:
    """The token flashlight treats as silence / word boundary: ``|``, ``<space>``, else blank (BPE)."""
    return word_boundary(tokens) or tokens[0]


class BeamSearchDecoder:
    """CTC prefix beam search (flashlight-text through torchaudio) with optional lexicon and LM.

    Args:
        tokens: the token list (index 0 = blank).
        lexicon: lexicon file (``WORD tok tok ... |`` per line) or None for lexicon-free search.
        lm: ARPA or KenLM binary n-gram file, or None. With a lexicon it is a word LM; without,
            a token LM whose words are the tokens.
        beam_size: hypotheses kept per frame.
        beam_size_token: tokens considered per frame (default: all).
        beam_threshold: prune hypotheses scoring this much below the best.
        lm_weight: LM score weight.
        word_score: score added per emitted word (lexicon mode) - counteracts the LM's bias
            towards short outputs.
        sil_score: score added per word boundary/silence token.
        unk_score: score of words outside the lexicon (``-inf``: never emitted).
        nbest: hypotheses returned per utterance by :meth:`nbest`.

    Raises:
        FileNotFoundError: lexicon or LM file missing.
        AsrcError: a lexicon spelling uses a token not in ``tokens`` (names the word).
    """

    def __init__(
        self,
        tokens: Sequence[str],
        *,
        lexicon=None,
        lm=None,
        beam_size: int = 50,
        beam_size_token: Optional[int] = None,
        beam_threshold: float = 50.0,
        lm_weight: float = 2.0,
        word_score: float = 0.0,
        sil_score: float = 0.0,
        unk_score: float = -math.inf,
        nbest: int = 1,
    ):
        from torchaudio.models.decoder import ctc_decoder

        self.tokens = list(tokens)
        if self.tokens[0] != BLANK:
            raise AsrcError(f"token 0 must be the CTC blank {BLANK!r}, got {self.tokens[0]!r}")
        for what, path in (("lexicon", lexicon), ("LM", lm)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{what} file {path} does not exist")
        if lexicon is not None:
            check_lexicon(lexicon, self.tokens)
            if lm is not None and is_arpa(lm):
                _check_lm_covers_lexicon(lm, lexicon)
        elif lm is not None and is_arpa(lm):
            # Without a lexicon flashlight scores *tokens* with the LM; a word LM would be
            # consulted with single letters and quietly do nothing useful.
            not_tokens = [w for w in arpa_unigrams(lm) if w not in self.tokens and w not in (UNK, "<s>", "</s>")]
            if not_tokens:
                raise AsrcError(
                    f"LM {lm} has words that are not tokens (e.g. {not_tokens[:5]}): a word LM needs a lexicon "
                    f"(write one with write_letter_lexicon / asrc-decode --lexicon-words {lm})"
                )
        self.lexicon = str(lexicon) if lexicon is not None else None
        self.lm = str(lm) if lm is not None else None
        try:
            with tempfile.TemporaryDirectory(prefix="asrc-ctc-") as tmp:
                lm_dict = None
                if self.lm is not None and self.lexicon is None:
                    # Lexicon-free search queries the LM with *token* indices, but torchaudio
                    # numbers its LM dictionary in another order unless given one: pass the
                    # token list itself (checked by test_lexicon_free_token_lm).
                    lm_dict = str(Path(tmp) / "lm_dict.txt")
                    Path(lm_dict).write_text("".join(t + "\n" for t in self.tokens), encoding="utf-8")
                self._decoder = ctc_decoder(
                    lexicon=self.lexicon,
                    tokens=self.tokens,
                    lm=self.lm,
                    lm_dict=lm_dict,
                    nbest=nbest,
                    beam_size=beam_size,
                    beam_size_token=beam_size_token,
                    beam_threshold=beam_threshold,
                    lm_weight=lm_weight,
                    word_score=word_score,
                    sil_score=sil_score,
                    unk_score=unk_score,
                    blank_token=BLANK,
                    sil_token=_sil_token(self.tokens),
                    unk_word=UNK,
                )
        except (RuntimeError, UnicodeDecodeError, ValueError) as e:
            # KenLM's FormatLoadException and friends, a file that is no LM at all: say which file it was.
            raise AsrcError(f"cannot build the CTC beam decoder (lexicon={self.lexicon}, lm={self.lm}): "
                            f"{type(e).__name__}: {e}") from e
        self._boundaries = {i for i, t in enumerate(self.tokens) if t in (LETTER_BOUNDARY, CHAR_BOUNDARY)}
        self._sil = self.tokens.index(_sil_token(self.tokens))

    def nbest(self, logits: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> List[List[Hypothesis]]:
        """Decode ``logits[B, T', V]`` (``lengths[B]``); per utterance the n best, best first."""
        lengths = check_logits(logits, lengths, len(self.tokens))
        log_probs = torch.log_softmax(logits.detach().float(), dim=-1).cpu().contiguous()
        results = self._decoder(*self._closed(log_probs, lengths))
        out = []
        for b, hyps in enumerate(results):
            utt = []
            last = max(int(lengths[b]) - 1, 0)  # the utterance's last frame
            for h in hyps:
                ids = h.tokens.tolist()
                steps = h.timesteps.tolist() if h.timesteps is not None else [0] * len(ids)
                # flashlight opens and closes every hypothesis with the silence token.
                while ids and ids[0] in self._boundaries:
                    ids.pop(0)
                    steps.pop(0)
                while ids and ids[-1] in self._boundaries:
                    ids.pop()
                    steps.pop()
                if self.lexicon is not None:
                    text = " ".join(h.words)
                else:
                    text = tokens_to_text(self.tokens[i] for i in ids)
                # flashlight's timestep 0 is its start state, before the first frame: a token
                # at timestep t was emitted in frame t - 1 (test_beam_frames_follow_the_tokens)
                steps = [min(max(int(t) - 1, 0), last) for t in steps]
                conf = [float(log_probs[b, t, i].exp()) for i, t in zip(ids, steps)]
                utt.append(Hypothesis(ids=ids, text=text, score=float(h.score), words=list(h.words),
                                      frames=[(t, t + 1) for t in steps], confidences=conf))
            out.append(utt)
        return out

    def _closed(self, log_probs: torch.Tensor, lengths: torch.Tensor):
        """What the decoder searches: with a lexicon, each utterance gets one more frame in which
        the word boundary is certain. flashlight completes a lexicon word only on the boundary
        that ends its spelling, and a model trained on transcripts without a final ``|`` (asrc's
        targets) never emits one after the last word, which was then dropped or replaced by a
        shorter word. A boundary after the model's own final ``|`` adds nothing (CTC merges it
        or it is silence)."""
        lengths = lengths.to(torch.int32)
        if self.lexicon is None or self._sil not in self._boundaries:
            return log_probs, lengths
        b, t, v = log_probs.shape
        closing = torch.full((v,), -1e4)
        closing[self._sil] = 0.0
        out = closing.expand(b, t + 1, v).clone()
        out[:, :t] = log_probs
        for i, n in enumerate(lengths.tolist()):
            out[i, n] = closing
        return out.contiguous(), lengths + 1

    def __call__(self, logits: torch.Tensor, lengths: Optional[torch.Tensor] = None) -> List[Hypothesis]:
        """Decode ``logits[B, T', V]`` (``lengths[B]``) into the best hypothesis per utterance."""
        return [hyps[0] if hyps else Hypothesis(ids=[], text="", score=-math.inf) for hyps in self.nbest(logits, lengths)]


def _check_lm_covers_lexicon(lm, lexicon) -> None:
    """A word LM must know the lexicon's words: none of them in its unigrams (another case,
    another language) is an error, fewer than half a warning; otherwise the LM scores every
    word as ``<unk>`` and the search runs on without it, silently."""
    with open(lexicon, encoding="utf-8") as f:
        words = {line.split()[0] for line in f if line.strip()}
    known = set(arpa_unigrams(lm))
    covered = len(words & known)
    if covered == 0:
        raise AsrcError(f"LM {lm} knows none of the {len(words)} words of the lexicon {lexicon} (e.g. "
                        f"{sorted(words)[:3]} against the LM's {sorted(known - {UNK, '<s>', '</s>'})[:3]}): "
                        f"the LM would score every word as {UNK}; check case and language")
    if covered < len(words) / 2:
        logger.warning("LM %s knows only %d of the %d words of the lexicon %s; the others get its %s score",
                       lm, covered, len(words), lexicon, UNK)


def check_lexicon(path, tokens: Sequence[str]) -> int:
    """Check every spelling in the lexicon ``path`` uses only ``tokens``; return the word count.

    Raises:
        AsrcError: a line without spelling or a spelling token not in ``tokens`` (file, line, word).
    """
    known = set(tokens)
    n = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 2:
                raise AsrcError(f"{path}:{lineno}: word {parts[0]!r} has no spelling")
            bad = [t for t in parts[1:] if t not in known]
            if bad:
                raise AsrcError(f"{path}:{lineno}: word {parts[0]!r} is spelled with tokens {bad} not in the token list")
            n += 1
    if n == 0:
        raise AsrcError(f"{path}: empty lexicon")
    return n


def spell_letters(word: str, tokens: Sequence[str]) -> Optional[List[str]]:
    """The letter-token spelling of ``word`` followed by the word boundary, or None if a letter
    has no token (case is matched as given, then upper, then lower case)."""
    known = set(tokens)
    boundary = LETTER_BOUNDARY if LETTER_BOUNDARY in known else CHAR_BOUNDARY if CHAR_BOUNDARY in known else None
    if boundary is None:
        raise AsrcError(f"token list has no word boundary ({LETTER_BOUNDARY!r} or {CHAR_BOUNDARY!r}); not a letter token list")
    spelling = []
    for c in word:
        for cand in (c, c.upper(), c.lower()):
            if cand in known and not is_special(cand) and cand not in (LETTER_BOUNDARY, CHAR_BOUNDARY):
                spelling.append(cand)
                break
        else:
            return None
    return spelling + [boundary]


def write_letter_lexicon(words: Iterable[str], tokens: Sequence[str], path) -> Tuple[int, List[str]]:
    """Write a flashlight lexicon (``WORD W O R D |``) for letter tokens.

    Words that cannot be spelled with ``tokens`` are left out of the lexicon and returned, and
    also written one per line to ``path`` + ``.skipped`` so that nothing is dropped unseen.
    Duplicates are written once.

    Returns:
        ``(number of words written, skipped words)``.

    Raises:
        AsrcError: no word at all could be spelled.
    """
    from asrc.core.files import atomic_write

    path = Path(path)
    seen = set()
    written, skipped = 0, []
    with atomic_write(path) as f:
        for word in words:
            if word in seen or word in (UNK, "<s>", "</s>"):
                continue
            seen.add(word)
            spelling = spell_letters(word, tokens)
            if spelling is None:
                skipped.append(word)
                continue
            f.write(f"{word}\t{' '.join(spelling)}\n")
            written += 1
    skipped_path = path.with_name(path.name + ".skipped")
    if skipped:
        with atomic_write(skipped_path) as f:
            f.write("".join(w + "\n" for w in skipped))
    elif skipped_path.exists():
        skipped_path.unlink()
    if written == 0:
        path.unlink(missing_ok=True)
        raise AsrcError(f"none of the {len(skipped)} words can be spelled with the token list (e.g. {skipped[:3]}); "
                        f"no lexicon written to {path}")
    return written, skipped


def _open_text(path):
    """``path`` as UTF-8 text, through gzip when it is compressed (told by its first bytes)."""
    return gzip.open(path, "rt", encoding="utf-8") if is_gzip(path) else open(path, encoding="utf-8")


def read_word_list(path) -> List[str]:
    """Words of a word-list file (first field of each line) or of an ARPA file's unigrams
    (gzip-compressed or not). Raises :class:`AsrcError` naming the file when it is not UTF-8
    text or holds no word."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"word list {path} does not exist")
    try:
        with _open_text(path) as f:
            first = ""
            for first in f:
                if first.strip():
                    break
            if first.strip() == "\\data\\":
                return arpa_unigrams(path)
            words = [first.split()[0]] if first.strip() else []
            words += [line.split()[0] for line in f if line.strip()]
    except (UnicodeDecodeError, EOFError, OSError) as e:  # binary, or a damaged gzip file
        raise AsrcError(f"word list {path}: not a word list or ARPA file (UTF-8 text, gzip allowed): {e}") from None
    if not words:
        raise AsrcError(f"word list {path} holds no word")
    return words


def is_arpa(path) -> bool:
    """True if the first non-empty line of ``path`` (gzip-compressed or not) is ``\\data\\``
    (an ARPA file, not a KenLM binary)."""
    try:
        with _open_text(path) as f:
            for line in f:
                if line.strip():
                    return line.strip() == "\\data\\"
    except (UnicodeDecodeError, EOFError, OSError):  # binary, or damaged gzip
        return False
    return False


def arpa_unigrams(path) -> List[str]:
    """The words of the ``\\1-grams:`` section of an ARPA file (gzip-compressed or not), in file order."""
    words, in_unigrams = [], False
    with _open_text(path) as f:
        for line in f:
            line = line.strip()
            if line == "\\1-grams:":
                in_unigrams = True
                continue
            if in_unigrams:
                if line.startswith("\\"):
                    break
                if line:
                    parts = line.split()
                    if len(parts) < 2:
                        raise AsrcError(f"{path}: malformed unigram line {line!r}")
                    words.append(parts[1])
    if not words:
        raise AsrcError(f"{path}: no \\1-grams: section found; not an ARPA file")
    return words
