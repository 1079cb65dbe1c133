import json
import logging
from pathlib import Path

import pytest
import soundfile as sf

from asrc.core.tables import read_table
from asrc.data.datadir import validate_data_dir
from asrc.data.librispeech import prepare_librispeech
from asrc.data.synth import (
    available_engines, builtin_sentences, espeak_variants, festival_voices, flite_voices, make_speakers, read_sentences,
    synthesize_corpus,
)
from asrc.data.text import is_normalized
from asrc.data.tokens import letter_tokens
from asrc.errors import AsrcError


def test_builtin_sentences_are_distinct_normalised_and_deterministic():
    pairs = builtin_sentences(300, seed=3)
    transcripts = [t for _, t in pairs]
    assert len(transcripts) == 300 and all(is_normalized(t) for t in transcripts)
    assert builtin_sentences(300, seed=3) == pairs and builtin_sentences(300, seed=4) != pairs
    # Only isolated words repeat (each said by many voices); sequences are distinct.
    sequences = [t for t in transcripts if " " in t]
    assert len(set(sequences)) == len(sequences) > 200
    isolated = {t for t in transcripts if " " not in t}
    assert {"B", "SEVEN", "STOP"} & isolated and len(transcripts) - len(set(transcripts)) > 0
    # Letters are written as said, with and without pauses; AN4-style letter ids and commands.
    spelled = [(tts, t) for tts, t in pairs if ", " in tts and t.split()[0] not in ("ERASE", "RUBOUT")]
    assert spelled and any(all(len(w) == 1 for w in t.split()) for _, t in spelled)
    assert any(tts.startswith(("bee ", "see ", "dee ")) and ", " not in tts for tts, _ in pairs)
    assert any(t.split()[0] in ("ERASE", "RUBOUT", "ENTER") and len(t.split()[1]) == 1 for t in transcripts)


def test_read_sentences(tmp_path, caplog):
    path = tmp_path / "metadata.csv"
    path.write_text("LJ001|Printing, in 1st place|Printing, in first place\n\nLJ002|...|...\nplain line 2\n")
    with caplog.at_level(logging.WARNING):
        pairs = read_sentences(path)
    assert pairs == [("Printing, in first place", "PRINTING IN FIRST PLACE"), ("plain line two.", "PLAIN LINE TWO")]
    assert "1 line(s) have no words after normalisation and are not used: lines 3" in caplog.text
    # characters without an ASCII spelling: reported, and the TTS says the transcript
    path.write_text("LJ9|Café|Café\nLJ8|日本語 Tokyo|日本語 Tokyo\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        pairs = read_sentences(path)
    assert pairs == [("Café", "CAFE"), ("tokyo.", "TOKYO")]
    assert "1 line(s) lost characters with no ASCII spelling in normalisation: lines 2 (日本語)" in caplog.text


def test_speakers_are_distinct_and_deterministic():
    speakers = make_speakers({"train": 30, "dev": 5}, ["piper", "espeak", "flite"], seed=1)
    assert [s.speaker_id for s in speakers] == [str(1000 + i) for i in range(35)]
    assert [s.engine for s in speakers[:4]] == ["piper", "espeak", "flite", "piper"]
    assert len({(s.engine, s.voice, s.tract, s.rate) for s in speakers}) == 35
    assert make_speakers({"train": 30, "dev": 5}, ["piper", "espeak", "flite"], seed=1) == speakers
    with pytest.raises(ValueError, match="unknown TTS engine"):
        make_speakers({"x": 1}, ["sapi"])


def test_synthesize_and_prepare(tmp_path):
    engines = [e for e in ("piper", "espeak", "flite") if e in available_engines()]
    assert "piper" in engines  # installed with asrc
    n = len(engines)
    out = tmp_path / "synth"
    synthesize_corpus(out, {"train": 2 * n, "test": 1}, utts_per_speaker=2, seed=7, nj=2, engines=engines,
                      progress=False)
    table = (out / "SPEAKERS.tsv").read_text().splitlines()
    assert len(table) == 1 + n + 1 and table[0].startswith("speaker_id\tsubset\tengine")
    written = prepare_librispeech(out, tmp_path / "data", nj=1, progress=False)
    assert sorted(written) == ["test", "train"]
    text = read_table(written["train"] / "text")
    assert len(text) == 2 * n and all(is_normalized(t) for t in text.values())
    for d in written.values():
        assert (d / "skipped.txt").read_text() == ""
        assert validate_data_dir(d, token_list=letter_tokens()) == []
    for utt, path in read_table(written["train"] / "wav.scp").items():
        info = sf.info(path)
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert 0.4 < info.duration < 15, (utt, info.duration)
    # Same arguments: finished speakers are kept, nothing is redone.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    synthesize_corpus(out, {"train": 2 * n, "test": 1}, utts_per_speaker=2, seed=7, nj=2, engines=engines,
                      progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == before
    with pytest.raises(AsrcError, match="other settings"):
        synthesize_corpus(out, {"train": 2 * n}, utts_per_speaker=2, seed=8, engines=engines, progress=False)


def test_every_installed_voice_is_offered():
    # the engines' own voice lists, not a fixed table (espeak-ng has ~100 variants)
    if "espeak" in available_engines():
        assert len(espeak_variants()) > 20 and "m3" in espeak_variants()
    if "flite" in available_engines():
        assert "slt" in flite_voices() and "awb_time" not in flite_voices()
    if "festival" in available_engines():
        # every voice folder of the installed Festival (tools/install.sh: kal, ked, slt)
        on_disk = {p.name for p in Path("/usr/share/festival/voices").glob("*/*") if p.is_dir()}
        assert festival_voices() and on_disk <= set(festival_voices())
        speakers = make_speakers({"train": 12}, ["festival"], seed=0)
        assert {s.voice for s in speakers} == set(festival_voices())


@pytest.mark.skipif("festival" not in available_engines(), reason="Festival (Debian festival) is not installed")
def test_festival_engine(tmp_path):
    synthesize_corpus(tmp_path / "f", {"train": 2}, utts_per_speaker=1, seed=3, nj=1, engines=["festival"],
                      progress=False)
    flacs = sorted((tmp_path / "f").rglob("*.flac"))
    assert len(flacs) == 2 and all(0.4 < sf.info(p).duration < 15 for p in flacs)


def test_synthesis_is_deterministic(tmp_path):
    engines = [e for e in ("piper", "espeak", "flite") if e in available_engines()]
    runs = []
    for name, nj in (("a", 1), ("b", 2)):
        synthesize_corpus(tmp_path / name, {"train": len(engines)}, utts_per_speaker=1, seed=2, nj=nj,
                          engines=engines, progress=False)
        runs.append({p.relative_to(tmp_path / name): p.read_bytes() for p in (tmp_path / name).rglob("*.flac")})
    assert len(runs[0]) == len(engines) and runs[0] == runs[1]


def test_a_wrong_text_file_leaves_the_folder_usable(tmp_path):
    """--text that does not exist failed after synth.json was written, so the corrected rerun
    was refused ("holds a corpus made with other settings") though nothing had been made."""
    engines = available_engines()[:1]
    if not engines:
        pytest.skip("no TTS engine installed")
    out = tmp_path / "sy"
    with pytest.raises(FileNotFoundError):
        synthesize_corpus(out, {"train": 1}, engines=engines, text_file=tmp_path / "typo.txt", progress=False)
    assert not (out / "synth.json").exists()
    # settings recorded but nothing made yet (a run killed at once): other settings may take over
    out.mkdir(exist_ok=True)
    (out / "synth.json").write_text('{"seed": 99}\n')
    text = tmp_path / "sent.txt"
    text.write_text("HELLO WORLD\n")
    synthesize_corpus(out, {"train": 1}, engines=engines, text_file=text, progress=False, nj=1)
    assert json.loads((out / "synth.json").read_text())["text_file"] == str(text.resolve())
    (out / "stray").write_text("")
    with pytest.raises(AsrcError, match="other settings"):
        synthesize_corpus(out, {"train": 1}, engines=engines, seed=5, text_file=text, progress=False, nj=1)


def test_overwrite_replaces_a_corpus_made_with_other_settings(tmp_path, capsys):
    """A recipe stage redone with other --synth_subsets met "holds a corpus made with other
    settings" and stopped; with --overwrite the old corpus goes and the new one is made (and a
    folder that is no synth corpus is still refused)."""
    from asrc.bin.data import main

    engines = [e for e in ("espeak", "flite", "piper") if e in available_engines()][:1]
    assert engines, "no TTS engine installed"
    out = tmp_path / "db"
    args = [str(out), "--engines", engines[0], "--utts-per-speaker", "1", "--nj", "1", "--no-progress"]
    assert main(["synth", *args, "--subsets", "train:2"]) == 0
    assert main(["synth", *args, "--subsets", "train:1,dev:1"]) != 0
    assert "other settings" in capsys.readouterr().err
    assert len(list(out.rglob("*.flac"))) == 2 and not (out / "dev").exists()
    assert main(["synth", *args, "--subsets", "train:1,dev:1", "--overwrite"]) == 0
    assert json.loads((out / "synth.json").read_text())["subsets"] == {"train": 1, "dev": 1}
    flacs = sorted(p.relative_to(out).parts[0] for p in out.rglob("*.flac"))
    assert flacs == ["dev", "train"]
    # same settings with --overwrite: resumes, nothing is made again
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")}
    assert main(["synth", *args, "--subsets", "train:1,dev:1", "--overwrite"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.flac")} == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep\n")
    assert main(["synth", str(other), "--engines", engines[0], "--subsets", "train:1", "--overwrite",
                 "--no-progress"]) != 0
    assert (other / "notes.txt").read_text() == "keep\n"
