"""Numeric options out of range, and inputs that name nothing, are one-line errors naming the flag,
before anything is written (audit B, items 3, 4, 8, 9, 11, 12, 14).

Each case here used to end otherwise: a success with nothing learnt (``--n-mels 0``), a torch
traceback (``--lr -1``, ``--num-threads -1``, ``--threads -1``), a ZeroDivisionError
(``--calib-utts 0``), ``{}`` with exit status 0 (``--wer-dataset`` naming no row), a whole model
written before ``--check``'s data dir was found missing, or an ONNX file that failed its check.
"""

import json
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from fault_helpers import save_tiny_model, score_a_hypothesis

PROGRESS = re.compile(r"^[\w ]+: +\d+%\|")  # a tqdm bar


def error_line(err: str, prog: str) -> str:
    """The one line of ``err`` besides progress bars and warnings, ``PROG: error: ...``; no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines()
             if line.strip() and not PROGRESS.search(line) and "Warning" not in line and not line.startswith(" ")]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), normalize_waveform=True)


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    lines = []
    for i in range(3):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, (0.1 * np.random.default_rng(i).standard_normal(4000)).astype(np.float32), 16000,
                 subtype="PCM_16")
        lines.append(f"u{i} {wav}\n")
    (d / "wav.scp").write_text("".join(lines))
    (d / "text").write_text("".join(f"u{i} A B\n" for i in range(3)))
    (d / "utt2spk").write_text("".join(f"u{i} s\n" for i in range(3)))
    return d


# -- asrc-frontend-init (items 3 and 9) ----------------------------------------------------------

FRONTEND_INIT_BAD = [
    ("--n-mels", "0", "--n-mels must be >= 1, got 0"),
    ("--n-mels", "-4", "--n-mels must be >= 1, got -4"),
    ("--lr", "-1", "--lr must be a finite number > 0, got -1.0"),
    ("--lr", "0", "--lr must be a finite number > 0, got 0.0"),
    ("--lr", "nan", "--lr must be a finite number > 0, got nan"),
    ("--lr", "inf", "--lr must be a finite number > 0, got inf"),
    ("--num-threads", "-1", "--num-threads must be >= 1, got -1"),
    ("--num-threads", "0", "--num-threads must be >= 1, got 0"),
    ("--steps", "0", "--steps must be >= 1, got 0"),
    ("--batch-seconds", "-1", "--batch-seconds must be a finite number >= 0, got -1.0"),
    ("--batch-seconds", "inf", "--batch-seconds must be a finite number >= 0, got inf"),
]


@pytest.mark.parametrize("flag,value,message", FRONTEND_INIT_BAD, ids=[f"{f}={v}" for f, v, _ in FRONTEND_INIT_BAD])
def test_frontend_init_option_ranges(model_dir, data_dir, tmp_path, capsys, flag, value, message):
    from asrc.bin.frontend_init import main

    threads = torch.get_num_threads()
    out = tmp_path / "fi"
    assert main(["--config", str(model_dir / "config.yaml"), "--tokens", str(model_dir / "tokens.txt"),
                 "--data-dir", str(data_dir), "--out", str(out), "--steps", "1", "--device", "cpu",
                 flag, value]) == 1
    assert error_line(capsys.readouterr().err, "asrc-frontend-init") == f"asrc-frontend-init: error: {message}"
    assert not out.exists() and torch.get_num_threads() == threads


def test_init_frontend_without_a_target_is_an_error(model_dir):
    """The library refuses it too: n_mels=0 regresses nothing, at a loss of 0 from the start."""
    from asrc.models import load
    from asrc.models.frontend_init import init_frontend

    model = load(model_dir)
    batch = [(0.1 * torch.randn(2, 4000), torch.tensor([4000, 3000]))]
    with pytest.raises(ValueError, match="n_mels=0 must be >= 1"):
        init_frontend(model, batch, steps=1, n_mels=0)
    with pytest.raises(ValueError, match="lr=inf must be a finite number > 0"):
        init_frontend(model, batch, steps=1, lr=float("inf"))


# -- asrc-bench model-speed (item 9) ---------------------------------------------------------------

MODEL_SPEED_BAD = [
    ("--threads", "-1", "--threads must be >= 1, got -1"),
    ("--threads", "0", "--threads must be >= 1, got 0"),
    ("--runs", "0", "--runs must be >= 1, got 0"),
    ("--warmup", "0", "--warmup must be >= 1, got 0"),
    ("--seconds", "0", "--seconds must be a finite number > 0, got 0.0"),
    ("--seconds", "nan", "--seconds must be a finite number > 0, got nan"),
    ("--seconds", "inf", "--seconds must be a finite number > 0, got inf"),
]


@pytest.mark.parametrize("flag,value,message", MODEL_SPEED_BAD, ids=[f"{f}={v}" for f, v, _ in MODEL_SPEED_BAD])
def test_model_speed_option_ranges(model_dir, capsys, flag, value, message):
    from asrc.bin.bench import main

    threads = torch.get_num_threads()
    assert main(["model-speed", "--config-of", str(model_dir), "--runs", "1", flag, value]) == 1
    captured = capsys.readouterr()
    assert error_line(captured.err, "asrc-bench") == f"asrc-bench: error: {message}"
    assert captured.out == "" and torch.get_num_threads() == threads


def test_model_speed_clip_shorter_than_the_receptive_field(model_dir, capsys):
    pytest.importorskip("transformers")
    from asrc.bin.bench import main

    assert main(["model-speed", "--config-of", str(model_dir), "--runs", "1", "--seconds", "0.001"]) == 1
    line = error_line(capsys.readouterr().err, "asrc-bench")
    assert "--seconds 0.001 is 16 samples, fewer than the model's receptive field" in line


# -- asrc-quantize (items 8 and 11) ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-3"])
def test_quantize_calib_utts_range(model_dir, data_dir, tmp_path, capsys, value):
    from asrc.bin.quantize import main

    out = tmp_path / "q"
    assert main([str(model_dir), str(out), "--mode", "static-pos", "--calib", str(data_dir),
                 "--calib-utts", value]) == 1
    line = error_line(capsys.readouterr().err, "asrc-quantize")
    assert line == f"asrc-quantize: error: --calib-utts must be an integer >= 1, got {value}"
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--check", "--calib"])
def test_quantize_missing_data_dir_is_found_before_writing(model_dir, data_dir, tmp_path, capsys, flag):
    from asrc.bin.quantize import main

    out, missing = tmp_path / "q", tmp_path / "nonexistent"
    mode = "dynamic" if flag == "--check" else "static-pos"
    assert main([str(model_dir), str(out), "--mode", mode, flag, str(missing)]) == 1
    line = error_line(capsys.readouterr().err, "asrc-quantize")
    assert line == f"asrc-quantize: error: {flag} {missing}: no wav.scp; {flag} needs a Kaldi-style data dir"
    assert not out.exists()
    # The rerun with the right data dir needs no --overwrite: nothing was left behind.
    assert main([str(model_dir), str(out), "--mode", mode, flag, str(data_dir)]) == 0


def test_quantize_check_damaged_audio_names_the_flag(model_dir, data_dir, tmp_path, capsys):
    from asrc.bin.quantize import main

    with open(data_dir / "wav.scp", "a") as f:
        f.write(f"u9 {tmp_path / 'nope.wav'}\n")
    out = tmp_path / "q"
    assert main([str(model_dir), str(out), "--check", str(data_dir)]) == 1
    line = error_line(capsys.readouterr().err, "asrc-quantize")
    assert line.startswith("asrc-quantize: error: --check: utterance u9 ") and "nope.wav" in line
    assert not out.exists()


def test_quantize_failure_after_writing_removes_the_output(model_dir, data_dir, tmp_path, monkeypatch):
    """A failure while checking the written model (here: a bug) leaves no OUT to block the rerun."""
    import asrc.quant.quantize_dir as quantize_dir

    def broken(*args, **kwargs):
        raise RuntimeError("agreement broke")

    monkeypatch.setattr(quantize_dir, "agreement", broken)
    out = tmp_path / "q"
    with pytest.raises(RuntimeError, match="agreement broke"):
        quantize_dir.quantize_dir(model_dir, out, "dynamic", check=data_dir)
    assert not out.exists()
    # An OUT that was there before (--overwrite) is the user's: left in place.
    out.mkdir()
    (out / "keep").write_text("")
    with pytest.raises(RuntimeError):
        quantize_dir.quantize_dir(model_dir, out, "dynamic", check=data_dir, overwrite=True)
    assert (out / "keep").exists()


# -- asrc-results (item 4) -------------------------------------------------------------------------

@pytest.fixture
def scored_dir(data_dir, tmp_path):
    return score_a_hypothesis(data_dir, tmp_path / "decode")


def test_results_wer_dataset_names_no_row(scored_dir, tmp_path, capsys):
    from asrc.bin.results import main

    capsys.readouterr()
    wer_json, out = tmp_path / "w.json", tmp_path / "R.md"
    assert main(["--out", str(out), "--row", "teacher", "valid", str(scored_dir), "--row", "student", "dev",
                 str(scored_dir), "--wer-json", str(wer_json), "--wer-dataset", "test"]) == 1
    line = error_line(capsys.readouterr().err, "asrc-results")
    assert line == "asrc-results: error: --wer-dataset test: no --row has dataset 'test' (datasets: valid, dev)"
    assert not wer_json.exists() and not out.exists()
    # The dataset that is there: {model: WER}.
    assert main(["--out", str(out), "--row", "teacher", "valid", str(scored_dir), "--wer-json", str(wer_json),
                 "--wer-dataset", "valid"]) == 0
    assert list(json.loads(wer_json.read_text())) == ["teacher"]


def test_results_duplicate_row(scored_dir, tmp_path, capsys):
    from asrc.bin.results import main

    capsys.readouterr()
    out = tmp_path / "R.md"
    row = ["--row", "teacher", "valid", str(scored_dir)]
    assert main(["--out", str(out), *row, *row]) == 1
    line = error_line(capsys.readouterr().err, "asrc-results")
    assert "--row teacher valid is given twice" in line
    assert not out.exists()
    # The same model on two datasets, or two models on one, are rows of their own.
    assert main(["--out", str(out), *row, "--row", "teacher", "test", str(scored_dir),
                 "--row", "student", "valid", str(scored_dir)]) == 0


# -- asrc-export (items 12 and 14) -----------------------------------------------------------------

def test_export_out_is_a_directory(model_dir, tmp_path, capsys):
    pytest.importorskip("onnx")
    from asrc.bin.export import main

    (tmp_path / "outdir").mkdir()
    assert main([str(model_dir), str(tmp_path / "outdir"), "--format", "onnx"]) == 1
    line = error_line(capsys.readouterr().err, "asrc-export")
    assert line.startswith(f"asrc-export: error: {tmp_path / 'outdir'}: is a directory") and ".tmp" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outdir"] and not any((tmp_path / "outdir").iterdir())


def test_export_that_fails_its_check_is_not_left(model_dir, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    import asrc.quant.export as export
    from asrc.bin.export import main

    real = export.check_export

    def failing(*args, **kwargs):
        report = real(*args, **kwargs)
        return {**report, "ok": False, "message": report["message"].replace("check OK", "check FAILED")}

    out = tmp_path / "m.onnx"
    monkeypatch.setattr(export, "check_export", failing)
    assert main([str(model_dir), str(out), "--format", "onnx"]) == 1
    captured = capsys.readouterr()
    line = error_line(captured.err, "asrc-export")
    assert line.startswith(f"asrc-export: error: {out}: not written, the export failed its check: check FAILED")
    assert captured.out == "" and list(tmp_path.iterdir()) == []
    # An OUT already there is left as it was.
    out.write_bytes(b"earlier export")
    assert main([str(model_dir), str(out), "--format", "onnx"]) == 1
    assert out.read_bytes() == b"earlier export" and list(tmp_path.iterdir()) == [out]
    # Passing its check, the export is moved into place.
    monkeypatch.setattr(export, "check_export", real)
    capsys.readouterr()
    assert main([str(model_dir), str(out), "--format", "onnx"]) == 0
    assert "check OK" in capsys.readouterr().out and out.read_bytes() != b"earlier export"
    assert list(tmp_path.iterdir()) == [out]
