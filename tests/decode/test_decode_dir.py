"""decode_dir end to end on generated audio with a tiny real model."""

import json
import sys
import types
from pathlib import Path

import pytest
import soundfile as sf
import torch

from asrc.bin.decode import main as decode_main
from asrc.bin.score import main as score_main
from asrc.decode.ctc import GreedyDecoder, tokens_to_text
from asrc.decode.decode_dir import decode_dir
from asrc.decode.options import DecodeOptions
from asrc.decode.plan import job_fingerprint, make_batches, split_jobs, utterance_lengths
from asrc.core.tables import read_table
from asrc.errors import AsrcError
from asrc.models import load, num_parameters



def single_utterance_texts(model_dir, data_dir):
    """Reference: every utterance decoded alone, straight from its file."""
    model = load(model_dir)
    greedy = GreedyDecoder(model.tokens)
    out = {}
    for utt, spec in read_table(data_dir / "wav.scp").items():
        path = spec.split()[1] if spec.endswith("|") else spec  # "cat PATH |"
        wav, _ = sf.read(path, dtype="float32")
        x = torch.from_numpy(wav).unsqueeze(0)
        with torch.inference_mode():
            logits, out_lengths = model(x, torch.tensor([x.shape[1]]))
        out[utt] = greedy(logits, out_lengths)[0].text
    return out


def test_planning_is_balanced_and_length_sorted(lengths):
    jobs = split_jobs(lengths, 2)
    # Longest first, each to the lighter job: totals 14400 and 15200 samples.
    assert jobs == [["u2", "u1", "u5"], ["u4", "u6", "u3"]]
    assert make_batches(jobs[0], lengths, 9600 * 2 / 16000) == [["u2", "u1"], ["u5"]]
    assert make_batches(jobs[0], lengths, 0) == [["u2"], ["u1"], ["u5"]]
    assert split_jobs(lengths, 10) == [[u] for u in ["u2", "u4", "u6", "u1", "u3", "u5"]]


def test_batched_decoding_equals_single_utterances(model_dir, data_dir, lengths, tmp_path):
    out = tmp_path / "out"
    summary = decode_dir(data_dir, model_dir, out, DecodeOptions(batch_seconds=1.5))
    text = read_table(out / "text")
    assert list(text) == list(lengths)  # wav.scp order
    expected = single_utterance_texts(model_dir, data_dir)
    assert text == expected
    assert len(set(expected.values())) > 2  # the tiny model does say different things
    tokens = read_table(out / "token")
    assert {u: tokens_to_text(t.split()) for u, t in tokens.items()} == text

    assert summary["num_utts"] == len(lengths)
    assert summary["audio_seconds"] == pytest.approx(sum(lengths.values()) / 16000)
    assert summary["rtf"] == pytest.approx(summary["compute_seconds"] / summary["audio_seconds"])
    assert summary["model"]["params"] == num_parameters(load(model_dir))
    assert summary["model"]["size_mb"] == pytest.approx((model_dir / "model.pth").stat().st_size / 1e6)
    assert set(summary["latency_seconds"]) == {"mean", "median", "p90", "max"}
    assert json.loads((out / "rtf.json").read_text())["num_utts"] == 6
    assert "RTF" in (out / "rtf.log").read_text()


def test_parallel_jobs_failure_and_resume(model_dir, data_dir, lengths, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    decode_dir(data_dir, model_dir, one, DecodeOptions(nj=1))

    # Job 2 (u4 u6 u3) fails on u3 inside its process; job 1 still finishes and is kept.
    (data_dir / "utt2num_samples").write_text("".join(f"{u} {n}\n" for u, n in lengths.items()))
    u3 = Path(read_table(data_dir / "wav.scp")["u3"].split()[1])
    audio = u3.read_bytes()
    u3.write_bytes(b"not audio" * 100)
    with pytest.raises(AsrcError, match=r"decoding failed in job 2: AsrcError: utterance u3: .*1 finished job"):
        decode_dir(data_dir, model_dir, two, DecodeOptions(nj=2, batch_seconds=0))
    assert (two / "jobs/1/done").is_file() and not (two / "jobs/2/done").exists()
    assert "Traceback" in (two / "jobs/2/error.log").read_text()

    # The rerun decodes job 2 only.
    u3.write_bytes(audio)
    mtime = (two / "jobs/1/text").stat().st_mtime_ns
    again = decode_dir(data_dir, model_dir, two, DecodeOptions(nj=2))
    assert again["resumed_jobs"] == [1] and again["num_utts"] == 6
    assert (two / "jobs/1/text").stat().st_mtime_ns == mtime
    assert not (two / "jobs/2/error.log").exists()
    assert (two / "text").read_text() == (one / "text").read_text()
    assert decode_dir(data_dir, model_dir, two, DecodeOptions(nj=2))["resumed_jobs"] == [1, 2]


def test_job_fingerprint(model_dir, lengths):
    # Search options and the audio change the output, so finished jobs are not reused for
    # them; the speed options (jobs, threads, batching) do not.
    wav = {u: f"/audio/{u}.wav" for u in lengths}
    base = job_fingerprint(model_dir, DecodeOptions(), wav)
    assert job_fingerprint(model_dir, DecodeOptions(nj=3, threads_per_job=2, batch_seconds=0), wav) == base
    assert job_fingerprint(model_dir, DecodeOptions(method="beam"), wav) != base
    assert job_fingerprint(model_dir, DecodeOptions(), {**wav, "u1": "/elsewhere/u1.wav"}) != base
    assert job_fingerprint(model_dir, DecodeOptions(), dict(list(wav.items())[:-1])) != base
    # So does the computation: ASRC_FAST_PATH=0 (torch's plain modules) gives other int8 numbers.
    from asrc.models.wav2vec2 import plain_ops

    with plain_ops():
        assert job_fingerprint(model_dir, DecodeOptions(), wav) != base
    assert job_fingerprint(model_dir, DecodeOptions(), wav) == base


def test_a_changed_recording_or_model_is_decoded_again(model_dir, data_dir, make_wav, tmp_path):
    """Decoding into the same OUT again reuses finished jobs only while their audio and model
    are what they were: a recording rewritten in place, or tokens.txt / config.yaml changed,
    is decoded again (the audit's case: a rerun printed the old text)."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    out = tmp_path / "out"
    decode_dir(data_dir, model, out, DecodeOptions(nj=2))
    first = (out / "text").read_text()
    wav_scp = read_table(data_dir / "wav.scp")
    assert not wav_scp["u2"].endswith("|")
    before = {u: line for u, line in (ln.split(" ", 1) for ln in first.splitlines())}
    make_wav(Path(wav_scp["u2"]), 9600, seed=9)  # another recording under the same name
    decode_dir(data_dir, model, out, DecodeOptions(nj=2))
    again = {u: line for u, line in (ln.split(" ", 1) for ln in (out / "text").read_text().splitlines())}
    fresh = tmp_path / "fresh"
    decode_dir(data_dir, model, fresh, DecodeOptions(nj=2))
    assert (out / "text").read_text() == (fresh / "text").read_text()
    assert again["u2"] != before.get("u2")
    # two tokens swapped in tokens.txt: the same logits spell other words
    tokens = (model / "tokens.txt").read_text().splitlines()
    i, j = tokens.index("E"), tokens.index("T")
    tokens[i], tokens[j] = tokens[j], tokens[i]
    (model / "tokens.txt").write_text("\n".join(tokens) + "\n")
    decode_dir(data_dir, model, out, DecodeOptions(nj=2))
    decode_dir(data_dir, model, tmp_path / "fresh2", DecodeOptions(nj=2))
    assert (out / "text").read_text() == (tmp_path / "fresh2" / "text").read_text() != (fresh / "text").read_text()


def test_audio_errors_name_the_utterance(model_dir, data_dir, lengths, make_wav, tmp_path):
    wav_scp = data_dir / "wav.scp"
    good = wav_scp.read_text()

    def decode_with(line, **kw):
        wav_scp.write_text(good + line + "\n")
        return decode_dir(data_dir, model_dir, tmp_path / f"o{len(line)}", DecodeOptions(**kw))

    slow = make_wav(tmp_path / "slow.wav", 4000, sample_rate=8000)
    with pytest.raises(AsrcError, match=r"utterance u7: .*slow.wav.* 8000 Hz.*16000 Hz .*--resample"):
        decode_with(f"u7 {slow}")
    assert decode_with(f"u7 {slow}", resample=True)["audio_seconds"] == pytest.approx(sum(lengths.values()) / 16000 + 0.5)

    stereo = make_wav(tmp_path / "stereo.wav", 4000, channels=2)
    with pytest.raises(AsrcError, match=r"utterance u8: .*2 channels.*--mix-channels"):
        decode_with(f"u8 {stereo}")

    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF this is not audio at all" * 10)
    with pytest.raises(AsrcError, match=r"utterance u9: cannot read .*junk.wav"):
        decode_with(f"u9 {junk}")
    with pytest.raises(FileNotFoundError, match=r"utterance u10: .*missing.wav"):
        decode_with(f"u10 {tmp_path}/missing.wav")
    with pytest.raises(AsrcError, match=r"utterance u11: command 'false' failed"):
        decode_with("u11 false |")
    short = make_wav(tmp_path / "short.wav", 20)
    with pytest.raises(AsrcError, match=r"utterance u12: 20 samples .*receptive field of 40"):
        decode_with(f"u12 {short}")


def test_espnet_experiment_hook(model_dir, data_dir, tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text("encoder: asrc_wav2vec2\ntoken_list: [a, b]\n")
    monkeypatch.setitem(sys.modules, "asrc.models.espnet_dir", None)  # as if not written yet
    with pytest.raises(AsrcError, match="ESPnet experiment.*export_model_dir"):
        decode_dir(data_dir, exp, tmp_path / "o1")

    calls = []

    def export_model_dir(exp_dir, out_dir):
        import shutil

        calls.append((exp_dir, out_dir))
        shutil.copytree(model_dir, out_dir)

    monkeypatch.setitem(sys.modules, "asrc.models.espnet_dir", types.SimpleNamespace(export_model_dir=export_model_dir))
    summary = decode_dir(data_dir, exp, tmp_path / "o2")
    assert calls == [(exp, tmp_path / "o2" / "model")] and summary["num_utts"] == 6
    with pytest.raises(AsrcError, match="not a model directory"):
        decode_dir(data_dir, tmp_path / "wav", tmp_path / "o3")


def test_cli_beam_with_lexicon_then_score(model_dir, data_dir, tmp_path, capsys):
    words = tmp_path / "words.txt"
    words.write_text("A\nB\nAB\nTHE\n\u00c9T\u00c9\n")
    out = tmp_path / "beam"
    assert decode_main(["--model", str(model_dir), "--data", str(data_dir), "--out", str(out), "--method", "beam",
                        "--lexicon-words", str(words), "--beam-size", "8", "--batch-seconds", "0.5"]) == 0
    assert (out / "lexicon.txt.skipped").read_text() == "\u00c9T\u00c9\n"
    hyps = read_table(out / "text")
    assert all(set(h.split()) <= {"A", "B", "AB", "THE"} for h in hyps.values())
    assert score_main(["--ref", str(data_dir / "text"), "--hyp", str(out / "text"), "--out", str(out),
                       "--utt2spk", str(data_dir / "utt2spk")]) == 0
    assert "%WER" in capsys.readouterr().out
    assert (out / "score_wer" / "score.json").is_file()


def test_lengths_come_from_utt2num_samples_or_utt2dur(data_dir, lengths):
    wav_scp = read_table(data_dir / "wav.scp")
    assert utterance_lengths(data_dir, wav_scp) == lengths  # from the headers (and the pipe's output)
    (data_dir / "utt2dur").write_text("".join(f"{u} {n / 16000:.4f}\n" for u, n in lengths.items()))
    assert utterance_lengths(data_dir, wav_scp) == lengths
    (data_dir / "utt2num_samples").write_text("u1 5\n")
    with pytest.raises(AsrcError, match=r"utt2num_samples: no entry for 5 utterance"):
        utterance_lengths(data_dir, wav_scp)


@pytest.mark.parametrize("bad,match", [
    (dict(beam_size=0), "beam_size must be an integer >= 1, got 0"),
    (dict(beam_size=-5), "beam_size"),
    (dict(beam_threshold=-1.0), "beam_threshold must be a finite number > 0"),
    (dict(beam_threshold=float("nan")), "beam_threshold"),
    (dict(batch_seconds=float("nan")), "batch_seconds must be a finite number >= 0"),
    (dict(segment="vad", chunk_seconds=float("inf")), "chunk_seconds must be a finite number > 0, got inf"),
    (dict(segment="vad", context_seconds=float("nan")), "context_seconds must be a finite number >= 0"),
    (dict(segment="chunk", context_seconds=float("nan")), "context_seconds"),
    (dict(lm_weight=float("inf")), "lm_weight must be a finite number"),
    (dict(nj=0), "nj must be an integer >= 1"),
])
def test_options_out_of_range_are_named(bad, match):
    """Options that gave empty transcripts (a beam of 0, a negative or NaN threshold) or a
    traceback (an infinite window) are errors naming the option; NaN included."""
    with pytest.raises(ValueError, match=match):
        DecodeOptions(method="beam", **bad).validate()


def test_transcribe_cli_rejects_bad_threads(model_dir, make_wav, tmp_path, capsys):
    from asrc.bin.transcribe import main as transcribe_main

    wav = make_wav(tmp_path / "a.wav", 4000)
    with pytest.raises(SystemExit):
        transcribe_main([str(model_dir), str(wav), "--threads", "0"])
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err
    assert transcribe_main([str(model_dir), str(wav), "--chunk-seconds", "inf"]) == 1
    assert "chunk_seconds must be a finite number > 0, got inf" in capsys.readouterr().err
