"""User mistakes end in one line, ``asrc-X: error: CULPRIT: ...``, a non-zero status, no traceback,
and no partial output; ``--verbose`` adds the traceback (asrc.bin._cli)."""

import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from asrc.bin import _cli
from asrc.errors import AsrcError
from asrc.models import load
from fault_helpers import save_tiny_model, score_a_hypothesis

UTTS = ("u1", "u2", "u3")
PROGRESS = re.compile(r"^[\w ]+: +\d+%\|")  # a tqdm bar


def error_line(err: str, prog: str) -> str:
    """The one line of ``err`` besides progress bars, checked to be ``PROG: error: ...``; no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and not PROGRESS.search(line)]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


def write_wav(path, n=4000, seed=0):
    x = 0.1 * np.random.default_rng(seed).standard_normal(n)
    sf.write(path, x.astype(np.float32), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"), normalize_waveform=True)


@pytest.fixture
def data_dir(tmp_path):
    """Three good utterances (wav.scp, text, utt2spk)."""
    d, wav = tmp_path / "data", tmp_path / "wav"
    d.mkdir()
    wav.mkdir()
    (d / "wav.scp").write_text("".join(f"{u} {write_wav(wav / f'{u}.wav', seed=i)}\n" for i, u in enumerate(UTTS)))
    (d / "text").write_text("".join(f"{u} A B\n" for u in UTTS))
    (d / "utt2spk").write_text("".join(f"{u} s\n" for u in UTTS))
    return d


def add_entry(d, entry: str):
    with open(d / "wav.scp", "a") as f:
        f.write(entry)


# Damage to a data dir -> what the one line must name.
DATA_DAMAGE = {
    "utterance id twice": (lambda d: add_entry(d, f"u1 {d.parent / 'wav' / 'u2.wav'}\n"), r"wav\.scp:4: .*'u1'"),
    "blank line": (lambda d: add_entry(d, "\n"), r"wav\.scp:4: blank line"),
    "missing wav": (lambda d: add_entry(d, f"u9 {d.parent / 'nope.wav'}\n"), r"utterance u9: .*nope\.wav"),
    "0-byte wav": (lambda d: ((d.parent / "zero.wav").write_bytes(b""), add_entry(d, f"u9 {d.parent / 'zero.wav'}\n")),
                   r"utterance u9: .*zero\.wav"),
    "corrupt wav": (lambda d: ((d.parent / "junk.wav").write_bytes(b"RIFF" + random.Random(0).randbytes(2000)),
                               add_entry(d, f"u9 {d.parent / 'junk.wav'}\n")), r"utterance u9: .*junk\.wav"),
    "directory as wav": (lambda d: add_entry(d, f"u9 {d.parent / 'wav'}\n"), r"utterance u9: .*wav"),
    "failing pipe": (lambda d: add_entry(d, "u9 false |\n"), r"utterance u9: command 'false' failed"),
    "no wav.scp": (lambda d: (d / "wav.scp").unlink(), r"data: no wav\.scp"),
    "empty wav.scp": (lambda d: (d / "wav.scp").write_text(""), r"wav\.scp.* empty"),
}


@pytest.mark.parametrize("damage", list(DATA_DAMAGE))
def test_decode_bad_data(model_dir, data_dir, tmp_path, capsys, damage):
    from asrc.bin.decode import main

    make, culprit = DATA_DAMAGE[damage]
    make(data_dir)
    out = tmp_path / "out"
    assert main(["--model", str(model_dir), "--data", str(data_dir), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    line = error_line(captured.err, "asrc-decode")
    assert re.search(culprit, line), line
    assert captured.out == "" and not (out / "text").exists()


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def int8_without_yaml(d):
    from asrc.quant import quantize_model
    from asrc.models.quantized import save_quantized

    qmodel, spec = quantize_model(load(d), "dynamic")
    save_quantized(qmodel, spec, d)
    (d / "quantization.yaml").unlink()


MODEL_DAMAGE = {
    "no tokens.txt": (lambda d: (d / "tokens.txt").unlink(), r"m: the model has no token list \(tokens\.txt\)"),
    "no model.pth": (lambda d: (d / "model.pth").unlink(), r"m is not a model directory \(no model\.pth"),
    "truncated model.pth": (lambda d: truncate(d / "model.pth"), r"model\.pth: truncated PyTorch checkpoint"),
    "int8 without quantization.yaml": (int8_without_yaml, r"model\.pth: int8 weights .* no quantization\.yaml"),
}


@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
def test_decode_bad_model_dir(model_dir, data_dir, tmp_path, capsys, damage):
    from asrc.bin.decode import main

    make, culprit = MODEL_DAMAGE[damage]
    m = shutil.copytree(model_dir, tmp_path / "m")
    make(m)
    out = tmp_path / "out"
    assert main(["--model", str(m), "--data", str(data_dir), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert re.search(culprit, error_line(captured.err, "asrc-decode"))
    assert captured.out == "" and not (out / "text").exists()


def test_transcribe_damaged_model(model_dir, data_dir, tmp_path, capsys):
    from asrc.bin.transcribe import main

    m = shutil.copytree(model_dir, tmp_path / "m")
    truncate(m / "model.pth")
    assert main([str(m), str(data_dir.parent / "wav" / "u1.wav")]) == 1
    captured = capsys.readouterr()
    assert re.search(r"m/model\.pth: truncated", error_line(captured.err, "asrc-transcribe"))
    assert captured.out == ""


def test_transcribe_bad_file_keeps_the_others(model_dir, data_dir, tmp_path, capsys):
    from asrc.bin.transcribe import main

    good = data_dir.parent / "wav" / "u1.wav"
    assert main([str(model_dir), str(tmp_path / "nope.wav"), str(good)]) == 1
    captured = capsys.readouterr()
    assert "nope.wav" in error_line(captured.err, "asrc-transcribe")
    assert captured.out.startswith(f"{good}\t")


SCORE_DAMAGE = {
    "missing hypothesis file": (lambda d: d / "nope.txt", r"nope\.txt: No such file"),
    "hypothesis id twice": (lambda d: (d / "hyp.txt").write_text("u1 A\nu2 B\nu1 C\n") and d / "hyp.txt",
                            r"hyp\.txt:3: .*'u1'"),
    "directory as hypothesis": (lambda d: d, r"is a directory"),
}


@pytest.mark.parametrize("damage", list(SCORE_DAMAGE))
def test_score_bad_hypothesis(data_dir, tmp_path, capsys, damage):
    from asrc.bin.score import main

    make, culprit = SCORE_DAMAGE[damage]
    hyp = make(tmp_path)
    out = tmp_path / "scored"
    assert main(["--ref", str(data_dir / "text"), "--hyp", str(hyp), "--out", str(out), "--sclite", "no"]) == 1
    captured = capsys.readouterr()
    assert re.search(culprit, error_line(captured.err, "asrc-score"))
    assert captured.out == "" and not (out / "score_wer" / "score.json").exists()


@pytest.fixture
def scored_dir(data_dir, tmp_path):
    return score_a_hypothesis(data_dir, tmp_path / "decode")


RESULTS_DAMAGE = {
    "score.json cut short": (lambda d: (d / "score_wer" / "score.json").write_text('{"total": '),
                             r"score_wer/score\.json: not valid JSON"),
    "score.json without counts": (lambda d: (d / "score_wer" / "score.json").write_text('{"total": {"snt": 1}}'),
                                  r"score_wer/score\.json: 'total' lacks the counts"),
    "rtf.json is a list": (lambda d: (d / "rtf.json").write_text("[]"), r"rtf\.json: expected a JSON object"),
}


@pytest.mark.parametrize("damage", list(RESULTS_DAMAGE))
def test_results_damaged_scores(scored_dir, tmp_path, capsys, damage):
    from asrc.bin.results import main

    make, culprit = RESULTS_DAMAGE[damage]
    make(scored_dir)
    capsys.readouterr()
    out = tmp_path / "RESULTS.md"
    assert main(["--out", str(out), "--row", "m", "test", str(scored_dir)]) == 1
    captured = capsys.readouterr()
    assert re.search(culprit, error_line(captured.err, "asrc-results"))
    assert captured.out == "" and not out.exists()


def test_results_out_is_a_directory(scored_dir, tmp_path, capsys):
    from asrc.bin.results import main

    capsys.readouterr()
    assert main(["--out", str(tmp_path), "--row", "m", "test", str(scored_dir)]) == 1
    assert f"--out {tmp_path} is a directory" in error_line(capsys.readouterr().err, "asrc-results")


def test_quantize_bad_calibration_audio(model_dir, data_dir, tmp_path, capsys):
    from asrc.bin.quantize import main

    add_entry(data_dir, f"u0 {tmp_path / 'nope.wav'}\n")  # first in wav.scp order: always calibrated on
    out = tmp_path / "int8"
    assert main([str(model_dir), str(out), "--mode", "static-pos", "--calib", str(data_dir)]) == 1
    captured = capsys.readouterr()
    assert re.search(r"utterance u0.*nope\.wav", error_line(captured.err, "asrc-quantize"))
    assert captured.out == "" and not (out / "model.pth").exists()


def test_quantize_int8_source_without_quantization_yaml(model_dir, tmp_path, capsys):
    from asrc.bin.quantize import main

    m = shutil.copytree(model_dir, tmp_path / "m")
    int8_without_yaml(m)
    assert main([str(m), str(tmp_path / "out")]) == 1
    assert "no quantization.yaml" in error_line(capsys.readouterr().err, "asrc-quantize")
    assert not (tmp_path / "out").exists()


def test_export_damaged_model(model_dir, tmp_path, capsys):
    from asrc.bin.export import main

    m = shutil.copytree(model_dir, tmp_path / "m")
    (m / "model.pth").write_bytes(b"")
    assert main([str(m), str(tmp_path / "m.onnx"), "--format", "onnx"]) == 1
    captured = capsys.readouterr()
    assert re.search(r"m/model\.pth: empty file", error_line(captured.err, "asrc-export"))
    assert captured.out == "" and not (tmp_path / "m.onnx").exists()


def test_info_broken_quantization_yaml(model_dir, tmp_path, capsys):
    from asrc.bin.info import main

    m = shutil.copytree(model_dir, tmp_path / "m")
    (m / "quantization.yaml").write_text("- dynamic\n")
    assert main([str(m)]) == 1
    captured = capsys.readouterr()
    assert re.search(r"m/quantization\.yaml: expected a mapping", error_line(captured.err, "asrc-info"))
    assert captured.out == ""


def test_frontend_init_token_count(model_dir, data_dir, tmp_path, capsys):
    from asrc.bin.frontend_init import main

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("<blank>\nA\n")
    out = tmp_path / "fi"
    assert main(["--config", str(model_dir / "config.yaml"), "--tokens", str(tokens), "--data-dir", str(data_dir),
                 "--out", str(out), "--steps", "1", "--device", "cpu"]) == 1
    line = error_line(capsys.readouterr().err, "asrc-frontend-init")
    assert re.search(r"tokens\.txt: 2 tokens but .*config\.yaml has vocab_size=32", line)
    assert not out.exists()


def test_frontend_init_empty_data_dir(model_dir, tmp_path, capsys):
    from asrc.bin.frontend_init import main

    (tmp_path / "empty").mkdir()
    assert main(["--config", str(model_dir / "config.yaml"), "--tokens", str(model_dir / "tokens.txt"),
                 "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "fi"), "--steps", "1",
                 "--device", "cpu"]) == 1
    assert "empty" in error_line(capsys.readouterr().err, "asrc-frontend-init")
    assert not (tmp_path / "fi" / "model.pth").exists()


def test_bench_workdir_is_a_file(tmp_path, capsys):
    from asrc.bin.bench import main

    (tmp_path / "f").write_text("")
    assert main(["librispeech-prep", "--workdir", str(tmp_path / "f"), "--scale", "0.001"]) == 1
    assert f"{tmp_path / 'f'}: File exists" in error_line(capsys.readouterr().err, "asrc-bench")


def test_convert_existing_output(model_dir, tmp_path, capsys):
    from asrc.bin.convert import main

    before = {f.name: f.read_bytes() for f in model_dir.iterdir()}
    assert main(["--from", "fairseq", str(tmp_path / "x.pt"), str(model_dir)]) == 1
    assert "already holds a model; pass --overwrite" in error_line(capsys.readouterr().err, "asrc-convert")
    assert {f.name: f.read_bytes() for f in model_dir.iterdir()} == before


# The shared helper itself.


def test_verbose_adds_the_traceback(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.yaml").write_text("embed_dim: [\n")
    cmd = [sys.executable, "-m", "asrc.bin.info", str(tmp_path / "m")]
    quiet = subprocess.run(cmd, capture_output=True, text=True)
    assert quiet.returncode == 1 and quiet.stdout == ""
    assert re.search(r"m/config\.yaml: not valid YAML", error_line(quiet.stderr, "asrc-info"))
    verbose = subprocess.run(cmd + ["--verbose"], capture_output=True, text=True)
    assert verbose.returncode == 1 and verbose.stderr.startswith("Traceback")
    assert verbose.stderr.strip().splitlines()[-1] == quiet.stderr.strip()


def test_bugs_keep_their_traceback():
    @_cli.command("asrc-x")
    def main(argv=None):
        int("not a number")  # a ValueError outside asrc's code: a bug, not bad input

    with pytest.raises(ValueError, match="not a number"):
        main([])

    @_cli.command("asrc-x")
    def main2(argv=None):
        return None + 1

    with pytest.raises(TypeError):
        main2([])


def test_user_message_is_one_line():
    assert _cli.user_message(AsrcError("utterance u1: command 'x' failed (exit 1): line one\nline two\n")) == \
        "utterance u1: command 'x' failed (exit 1): line one; line two"
    assert _cli.user_message(FileNotFoundError(2, "No such file or directory", "a.wav")) == \
        "a.wav: No such file or directory"


class _BadUtterance(torch.utils.data.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, i):
        raise AsrcError("utterance u7: audio has 3 non-finite samples")


def test_dataloader_worker_error_keeps_its_message():
    loader = torch.utils.data.DataLoader(_BadUtterance(), num_workers=1)
    with pytest.raises(AsrcError) as e:
        next(iter(loader))
    assert "Original Traceback" in str(e.value)  # what torch makes of it
    assert _cli.user_message(e.value) == "utterance u7: audio has 3 non-finite samples"


def test_every_command_uses_the_shared_helper():
    import importlib
    from pathlib import Path

    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text()
    scripts = dict(re.findall(r'"(asrc-[\w-]+)=(asrc\.bin\.\w+):main"', setup))
    assert len(scripts) == 12
    for name, module in scripts.items():
        assert hasattr(importlib.import_module(module).main, "__wrapped__"), f"{name} is not wrapped by _cli.command"
