"""Word times: the frames of each output token (greedy and beam search), words formed as the
text forms them, and asrc-transcribe's CTM / JSON output, also for recordings split at pauses."""

import glob
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from asrc.core.audio import read_audio
from asrc.decode.ctc import BeamSearchDecoder, GreedyDecoder, tokens_to_text, word_confidences, word_spans

LETTERS = ["<blank>", "<pad>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")


def logits_for(path, vocab=len(LETTERS)):
    """Logits whose best path is ``path`` (token indices per frame)."""
    x = torch.full((1, len(path), vocab), -10.0)
    for t, i in enumerate(path):
        x[0, t, i] = 0.0
    return x


@pytest.mark.parametrize("tokens", [
    ["H", "I", "|", "Y", "O", "U"],
    ["|", "A", "|", "|", "B", "C", "|"],
    ["<space>", "A", "B", "<space>", "C"],
    ["\u2581HE", "LLO", "\u2581WORLD", "\u2581", "X"],
    ["A", "<unk>", "B", "</s>", "C", "|", "<unk>"],
    ["\u2581A\u2581B", "C"],
    [],
])
def test_words_are_the_text_words(tokens):
    frames = [(2 * k, 2 * k + 1) for k in range(len(tokens))]
    spans = word_spans(tokens, frames)
    assert " ".join(w for w, _, _ in spans) == tokens_to_text(tokens)
    confs = word_confidences(tokens, [0.5 + 0.01 * k for k in range(len(tokens))])
    assert [w for w, _ in confs] == [w for w, _, _ in spans]
    for w, a, b in spans:
        assert a < b
    assert [a for _, a, _ in spans] == sorted(a for _, a, _ in spans)


def test_greedy_frames_are_the_token_runs():
    b, h, i, bar = 0, LETTERS.index("H"), LETTERS.index("I"), LETTERS.index("|")
    # frames: - H H - I | | - I I -   -> H I | I (the second I after a blank is a new token)
    path = [b, h, h, b, i, bar, bar, b, i, i, b]
    hyp = GreedyDecoder(LETTERS)(logits_for(path))[0]
    assert [LETTERS[k] for k in hyp.ids] == ["H", "I", "|", "I"]
    assert hyp.frames == [(1, 3), (4, 5), (5, 7), (8, 10)]
    assert word_spans([LETTERS[k] for k in hyp.ids], hyp.frames) == [("HI", 1, 5), ("I", 8, 10)]


def test_greedy_confidence_is_the_posterior_peak_of_each_run():
    b, h, i, bar = 0, LETTERS.index("H"), LETTERS.index("I"), LETTERS.index("|")
    path = [b, h, h, b, i, bar, b]
    x = logits_for(path)
    x[0, 1, h] = -1.0  # H's first frame: a less sure H (still the best token there)
    x[0, 4, i] = -2.0  # I's only frame: less sure still
    x[0, 4, LETTERS.index("E")] = -2.5
    hyp = GreedyDecoder(LETTERS)(x)[0]
    probs = torch.softmax(x[0], dim=-1)
    assert hyp.confidences == pytest.approx([float(probs[2, h]), float(probs[4, i]), float(probs[5, bar])])
    assert hyp.confidences[1] < hyp.confidences[0] < 1.0
    (word, conf), = word_confidences([LETTERS[k] for k in hyp.ids], hyp.confidences)
    assert word == "HI" and conf == pytest.approx(float(probs[4, i]))  # the least sure letter


def test_greedy_frames_stop_at_the_length():
    h = LETTERS.index("H")
    x = logits_for([h, h, h, h, h, h])
    hyp = GreedyDecoder(LETTERS)(x, torch.tensor([3]))[0]
    assert hyp.frames == [(0, 3)]


def test_beam_frames_follow_the_tokens():
    path = [LETTERS.index(c) if c != "-" else 0 for c in "-HH-I-|-YY-O-U-"]
    hyp = BeamSearchDecoder(LETTERS, beam_size=5)(logits_for(path))[0]
    assert hyp.text == "HI YOU"
    assert len(hyp.frames) == len(hyp.ids)
    # each token in the first frame of its run: H 1, I 4, | 6, Y 8, O 11, U 13
    assert [a for a, _ in hyp.frames] == [1, 4, 6, 8, 11, 13] and all(b == a + 1 for a, b in hyp.frames)
    words = word_spans([LETTERS[k] for k in hyp.ids], hyp.frames)
    assert words == [("HI", 1, 5), ("YOU", 8, 14)]
    assert len(hyp.confidences) == len(hyp.ids) and all(0.99 < c <= 1.0 for c in hyp.confidences)


def test_transcribe_ctm_and_json(tmp_path, model_dir, make_wav, capsys):
    from asrc.bin import transcribe as cli

    wav = make_wav(tmp_path / "a b.wav", 16000 * 2)
    assert cli.main([str(model_dir), str(wav)]) == 0
    text = capsys.readouterr().out.split("\t", 1)[1].strip()
    assert cli.main([str(model_dir), str(wav), "--output", "json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["file"] == str(wav) and obj["text"] == text
    assert " ".join(w["word"] for w in obj["words"]) == text
    assert all(0 <= w["start"] < w["end"] <= 2.0 for w in obj["words"])
    assert all(0 < w["confidence"] <= 1.0 for w in obj["words"])
    assert cli.main([str(model_dir), str(wav), "--output", "ctm"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(obj["words"])
    for line, w in zip(lines, obj["words"]):
        name, channel, start, dur, word, conf = line.split()
        assert name == str(wav).replace(" ", "_") and channel == "1" and word == w["word"]
        assert float(conf) == pytest.approx(w["confidence"], abs=0.006)
        assert float(start) == pytest.approx(w["start"], abs=0.006)
        assert float(dur) == pytest.approx(w["end"] - w["start"], abs=0.011)


def test_transcribe_ctm_refuses_names_that_collide(tmp_path, model_dir, make_wav, capsys):
    """CTM cannot quote: 'a b.wav' and 'a_b.wav' would share a name there, so the pair is refused
    before decoding (one line naming both); text and JSON output keep the names apart."""
    from asrc.bin import transcribe as cli

    spaced, underscored = make_wav(tmp_path / "a b.wav", 16000), make_wav(tmp_path / "a_b.wav", 16000)
    with pytest.raises(SystemExit) as e:
        cli.main([str(model_dir), str(spaced), str(underscored), "--output", "ctm"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(spaced) in err and str(underscored) in err and "same name in the CTM" in err
    assert cli.main([str(model_dir), str(spaced), str(underscored), "--output", "json"]) == 0
    assert [json.loads(x)["file"] for x in capsys.readouterr().out.splitlines()] == [str(spaced), str(underscored)]
    assert cli.main([str(model_dir), str(spaced), str(spaced), "--output", "ctm"]) == 0  # one file twice is fine


def test_split_at_pauses_times_are_recording_times(tmp_path, an4_root, capsys):
    """Two AN4 utterances 4 s apart, split at the pause: the second one's words are timed after it."""
    from asrc.bin import transcribe as cli

    files = sorted(glob.glob(os.path.join(an4_root, "wav", "an4test_clstk", "fcaw", "*.sph")))[:2]
    a, b = (read_audio(f) for f in files)
    gap = np.zeros(16000 * 4, dtype=np.float32)
    path = tmp_path / "two.flac"
    sf.write(path, np.concatenate([gap[:16000], a, gap, b]), 16000)
    teacher = os.path.join(os.path.dirname(__file__), "..", "..", "egs", "an4", "teacher")
    assert cli.main([teacher, str(path), "--output", "json", "--chunk-seconds", "5"]) == 0
    words = json.loads(capsys.readouterr().out)["words"]
    second_starts = (16000 + len(a) + len(gap)) / 16000
    assert words and words[0]["start"] >= 0.9
    late = [w for w in words if w["start"] >= second_starts - 0.3]
    assert late and len(late) < len(words)  # words of both utterances, each in its own place
    assert all(not (len(a) / 16000 + 1.3 < w["start"] < second_starts - 0.3) for w in words)  # none in the pause
    assert words[-1]["end"] <= (16000 * 5 + len(a) + len(b)) / 16000 + 0.05
