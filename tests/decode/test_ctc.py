"""Greedy CTC on hand-made logits; beam search with and without lexicon/LM on a tiny vocabulary."""

import pytest
import torch

from asrc.models.ctc import greedy_ids
from asrc.decode.ctc import (
    BeamSearchDecoder,
    GreedyDecoder,
    arpa_unigrams,
    read_word_list,
    tokens_to_text,
    write_letter_lexicon,
)
from asrc.errors import AsrcError

LETTERS = ["<blank>", "<pad>", "</s>", "<unk>", "|", "A", "B", "C"]


def onehot_logits(rows, tokens=LETTERS):
    """[1, T, V] logits whose argmax per frame is the given token (10 vs 0)."""
    x = torch.zeros(1, len(rows), len(tokens))
    for t, tok in enumerate(rows):
        x[0, t, tokens.index(tok)] = 10.0
    return x


def frames(rows, tokens=LETTERS):
    """[1, T, V] log-probabilities from per-frame {token: prob} dicts (rest share 1e-4)."""
    out = []
    for probs in rows:
        v = torch.full((len(tokens),), 1e-4)
        for tok, p in probs.items():
            v[tokens.index(tok)] = p
        out.append((v / v.sum()).log())
    return torch.stack(out).unsqueeze(0)


def write_arpa(path, unigrams, bigrams):
    """A KenLM-readable ARPA file (tab-separated; KenLM needs at least bigrams)."""
    lines = ["\\data\\", f"ngram 1={len(unigrams)}", f"ngram 2={len(bigrams)}", "", "\\1-grams:"]
    lines += [f"{lp}\t{w}\t0" for w, lp in unigrams.items()]
    lines += ["", "\\2-grams:"] + [f"{lp}\t{w}" for w, lp in bigrams.items()] + ["", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path


def test_tokens_to_text():
    assert tokens_to_text(["|", "H", "I", "|", "|", "Y", "O", "U", "|"]) == "HI YOU"
    assert tokens_to_text(["\u2581HE", "LLO", "\u2581WOR", "LD"]) == "HELLO WORLD"
    assert tokens_to_text(["A", "<space>", "B", "<sos/eos>", "</s>", "<pad>"]) == "A B"
    assert tokens_to_text(["A", "<unk>", "B", "|", "C"]) == "A <unk> B C"


def test_greedy_collapses_repeats_then_drops_blanks():
    x = onehot_logits(["A", "A", "<blank>", "A", "B", "B", "|", "<blank>", "C", "C"])
    assert greedy_ids(x) == [[5, 5, 6, 4, 7]]
    hyp = GreedyDecoder(LETTERS)(x)[0]
    assert hyp.text == "AAB C"
    assert hyp.score == pytest.approx(10 * torch.log_softmax(x[0, 0], -1).max().item(), rel=1e-4)


def test_greedy_respects_lengths_in_a_batch():
    a = onehot_logits(["A", "<blank>", "B", "C", "C"])
    b = onehot_logits(["C", "C", "B", "A", "A"])  # only the first 2 frames are valid
    x = torch.cat([a, b])
    hyps = GreedyDecoder(LETTERS)(x, torch.tensor([5, 2]))
    assert [h.text for h in hyps] == ["ABC", "C"]
    assert greedy_ids(x, torch.tensor([0, 3])) == [[], [7, 6]]
    with pytest.raises(ValueError, match="outputs but the token list has"):
        GreedyDecoder(LETTERS[:-1])(x)
    with pytest.raises(ValueError, match="outside"):
        greedy_ids(x, torch.tensor([6, 1]))


# Frames: B slightly more likely than A, then A slightly more likely than B, then a boundary.
AMBIGUOUS = [{"B": 0.55, "A": 0.45}, {"<blank>": 1.0}, {"A": 0.55, "B": 0.45}, {"|": 0.9, "<blank>": 0.1}]


def test_beam_without_lm_matches_greedy_best_path():
    x = frames(AMBIGUOUS)
    beam = BeamSearchDecoder(LETTERS)(x)[0]
    greedy = GreedyDecoder(LETTERS)(x)[0]
    assert beam.text == greedy.text == "BA"
    assert beam.ids == [6, 5]  # flashlight's leading/trailing silence removed
    # Without an LM the best path's score is the sum of its frames' log-probabilities.
    assert beam.score == pytest.approx(greedy.score, abs=1e-5)
    assert greedy.score == pytest.approx(x[0].max(dim=-1).values.sum().item(), abs=1e-5)


def test_beam_with_lexicon_and_word_lm(tmp_path):
    x = frames(AMBIGUOUS)
    written, skipped = write_letter_lexicon(["AB", "BA", "AB", "XY"], LETTERS, tmp_path / "lexicon.txt")
    assert (written, skipped) == (2, ["XY"])
    assert (tmp_path / "lexicon.txt").read_text() == "AB\tA B |\nBA\tB A |\n"
    assert (tmp_path / "lexicon.txt.skipped").read_text() == "XY\n"
    lm = write_arpa(tmp_path / "lm.arpa", {"<unk>": -1, "<s>": -99, "</s>": -1, "AB": -0.1, "BA": -3},
                    {"<s> AB": -0.1, "<s> BA": -3})
    assert arpa_unigrams(lm) == ["<unk>", "<s>", "</s>", "AB", "BA"]
    assert read_word_list(lm) == arpa_unigrams(lm)
    lexicon = tmp_path / "lexicon.txt"
    no_lm = BeamSearchDecoder(LETTERS, lexicon=lexicon)(x)[0]
    assert (no_lm.text, no_lm.words) == ("BA", ["BA"])
    # The LM prefers AB by 2.9 (log10) per use; at weight 2 that outweighs the 0.4 nats of acoustics.
    with_lm = BeamSearchDecoder(LETTERS, lexicon=lexicon, lm=lm, lm_weight=2.0)(x)[0]
    assert with_lm.text == "AB"
    assert BeamSearchDecoder(LETTERS, lexicon=lexicon, lm=lm, lm_weight=0.0)(x)[0].text == "BA"


def test_lexicon_restricts_output(tmp_path):
    # Acoustically "CA", but only "AB" and "BA" exist.
    write_letter_lexicon(["AB", "BA"], LETTERS, tmp_path / "lex.txt")
    x = frames([{"C": 0.6, "B": 0.4}, {"<blank>": 1.0}, {"A": 0.9}, {"|": 0.9}])
    assert GreedyDecoder(LETTERS)(x)[0].text == "CA"
    assert BeamSearchDecoder(LETTERS, lexicon=tmp_path / "lex.txt")(x)[0].text == "BA"


def test_lexicon_free_token_lm(tmp_path):
    # A letter LM that likes A: at weight >= 0.5 the A-A reading beats the acoustic B-A.
    lm = write_arpa(tmp_path / "chars.arpa",
                    {"<unk>": -1, "<s>": -99, "</s>": -1, "A": -0.1, "B": -3, "|": -1}, {"<s> A": -0.1})
    x = frames(AMBIGUOUS)
    assert BeamSearchDecoder(LETTERS, lm=lm, lm_weight=0.0)(x)[0].text == "BA"
    assert BeamSearchDecoder(LETTERS, lm=lm, lm_weight=1.0)(x)[0].text == "AA"


def test_bpe_tokens_lexicon_free_and_with_lexicon(tmp_path):
    bpe = ["<blank>", "<unk>", "\u2581A", "B", "\u2581B", "A", "<sos/eos>"]
    x = frames([{"\u2581B": 0.55, "\u2581A": 0.45}, {"<blank>": 1.0}, {"A": 0.55, "B": 0.45},
                {"<blank>": 1.0}, {"\u2581A": 0.9}, {"B": 0.9}], bpe)
    assert GreedyDecoder(bpe)(x)[0].text == "BA AB"
    assert BeamSearchDecoder(bpe)(x)[0].text == "BA AB"
    (tmp_path / "lex.txt").write_text("AB \u2581A B\nBA \u2581B A\n")
    lm = write_arpa(tmp_path / "lm.arpa", {"<unk>": -1, "<s>": -99, "</s>": -1, "AB": -0.1, "BA": -3}, {"<s> AB": -0.1})
    assert BeamSearchDecoder(bpe, lexicon=tmp_path / "lex.txt")(x)[0].words == ["BA", "AB"]
    assert BeamSearchDecoder(bpe, lexicon=tmp_path / "lex.txt", lm=lm)(x)[0].words == ["AB", "AB"]


def test_beam_batch_with_lengths():
    a = frames(AMBIGUOUS)
    b = torch.cat([frames([{"C": 0.9}, {"<blank>": 0.9}]), frames([{"A": 0.9}, {"A": 0.9}])], dim=1)
    hyps = BeamSearchDecoder(LETTERS)(torch.cat([a, b]), torch.tensor([4, 2]))
    assert [h.text for h in hyps] == ["BA", "C"]


def test_beam_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.arpa"):
        BeamSearchDecoder(LETTERS, lm=tmp_path / "nope.arpa")
    (tmp_path / "bad_lex.txt").write_text("AB A B |\nXY X Y |\n")
    with pytest.raises(AsrcError, match=r"bad_lex.txt:2: word 'XY'.*\['X', 'Y'\]"):
        BeamSearchDecoder(LETTERS, lexicon=tmp_path / "bad_lex.txt")
    words = write_arpa(tmp_path / "words.arpa", {"<unk>": -1, "<s>": -99, "</s>": -1, "AB": -0.1}, {"<s> AB": -0.1})
    with pytest.raises(AsrcError, match="needs a lexicon"):
        BeamSearchDecoder(LETTERS, lm=words)
    (tmp_path / "uni.arpa").write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1\tA\t0\n\n\\end\\\n")
    with pytest.raises(AsrcError, match="uni.arpa"):
        BeamSearchDecoder(LETTERS, lm=tmp_path / "uni.arpa")


def test_lexicon_keeps_the_last_word_without_a_final_boundary(tmp_path):
    """asrc's targets have no '|' after the last word, so its models emit none there; flashlight
    completes a lexicon word only on the boundary that ends its spelling, and the last word was
    dropped (or a shorter word put in its place). Two utterances of different lengths in a batch."""
    write_letter_lexicon(["AB", "BA", "A", "CAB"], LETTERS, tmp_path / "lex.txt")
    ab_ba = frames([{"A": 0.9}, {"B": 0.9}, {"|": 0.9}, {"B": 0.9}, {"A": 0.9}])
    cab = torch.cat([frames([{"C": 0.9}, {"A": 0.9}, {"B": 0.9}]), frames([{"<blank>": 0.9}] * 2)], dim=1)
    hyps = BeamSearchDecoder(LETTERS, lexicon=tmp_path / "lex.txt")(torch.cat([ab_ba, cab]), torch.tensor([5, 3]))
    assert [h.text for h in hyps] == ["AB BA", "CAB"]
    assert hyps[0].words == ["AB", "BA"]
    assert [len(h.frames) for h in hyps] == [5, 3]  # A B | B A, C A B: the added boundary is no token
    assert all(a < 5 for a, _ in hyps[0].frames) and all(a < 3 for a, _ in hyps[1].frames)
    # a model that does end with '|' (fairseq / Hugging Face targets) reads the same
    closed = frames([{"A": 0.9}, {"B": 0.9}, {"|": 0.9}, {"B": 0.9}, {"A": 0.9}, {"|": 0.9}])
    assert BeamSearchDecoder(LETTERS, lexicon=tmp_path / "lex.txt")(closed)[0].text == "AB BA"


def test_word_times_carry_the_lexicon_words(tmp_path):
    """A lexicon word spelled otherwise ('X7' spelled A B) is the word of the CTM/JSON too, as in the text."""
    from asrc.decode.ctc import timed_words

    (tmp_path / "lex.txt").write_text("X7\tA B |\nBA\tB A |\n")
    hyp = BeamSearchDecoder(LETTERS, lexicon=tmp_path / "lex.txt")(frames([{"A": 0.9}, {"B": 0.9}]))[0]
    assert hyp.text == "X7"
    assert [w for w, *_ in timed_words(hyp, LETTERS, 0.02)] == ["X7"]
    greedy = GreedyDecoder(LETTERS)(frames([{"A": 0.9}, {"B": 0.9}]))[0]
    assert [w for w, *_ in timed_words(greedy, LETTERS, 0.02)] == ["AB"]


def test_lm_and_word_list_faults_are_named(tmp_path):
    import gzip

    words = write_arpa(tmp_path / "words.arpa", {"<unk>": -1, "<s>": -99, "</s>": -1, "AB": -0.1}, {"<s> AB": -0.1})
    gz = tmp_path / "words.arpa.gz"
    gz.write_bytes(gzip.compress(words.read_bytes()))
    # a gzipped word LM without a lexicon was taken for a binary and used as a letter LM
    with pytest.raises(AsrcError, match="needs a lexicon"):
        BeamSearchDecoder(LETTERS, lm=gz)
    assert read_word_list(gz) == ["<unk>", "<s>", "</s>", "AB"]
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(AsrcError, match="noise.bin: not a word list"):
        read_word_list(noise)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(AsrcError, match="empty.txt holds no word"):
        read_word_list(tmp_path / "empty.txt")
    with pytest.raises(AsrcError, match="noise.bin"):
        BeamSearchDecoder(LETTERS, lexicon=write_letter_lexicon(["AB"], LETTERS, tmp_path / "lex.txt") and
                          tmp_path / "lex.txt", lm=noise)
    # an LM that knows none of the lexicon's words (another case) would score every word as <unk>
    write_letter_lexicon(["BA", "CAB"], LETTERS, tmp_path / "lex2.txt")
    with pytest.raises(AsrcError, match=r"knows none of the 2 words"):
        BeamSearchDecoder(LETTERS, lexicon=tmp_path / "lex2.txt", lm=words)
    with pytest.raises(AsrcError, match="none of the 1 words can be spelled"):
        write_letter_lexicon(["XY"], LETTERS, tmp_path / "lex3.txt")
    assert not (tmp_path / "lex3.txt").exists()
