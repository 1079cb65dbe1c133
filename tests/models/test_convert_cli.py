"""asrc-convert end to end: folder/checkpoint in, model directory out, same logits after load."""

import subprocess
import sys

import torch

from asrc.bin.convert import main
from asrc.core.tables import read_tokens
from asrc.models import load

from test_import_fairseq import finetuned_checkpoint, write_dict
from test_import_hf import LETTERS, hf_logits, save_hf_folder, tiny_hf_model


def test_hf_folder_to_model_dir(tmp_path, capsys):
    hf = tiny_hf_model("pre_ln_layer")
    save_hf_folder(hf, tmp_path / "hf", do_normalize=True)
    assert main(["--from", "hf", str(tmp_path / "hf"), str(tmp_path / "out"), "--no-normalize"]) == 0
    out = capsys.readouterr().out
    assert "2 pre-LN layers, width 32" in out and "normalize_waveform=False" in out
    assert read_tokens(tmp_path / "out" / "tokens.txt")[:5] == ["<blank>", "<s>", "</s>", "<unk>", "|"]
    model = load(tmp_path / "out")
    wav = torch.randn(1, 2500)
    assert (model(wav)[0] - hf_logits(hf, wav)).abs().max().item() < 1e-4


def test_fairseq_checkpoint_to_model_dir(tmp_path, capsys):
    hf = tiny_hf_model("post_ln_group")
    torch.save(finetuned_checkpoint(hf, "args"), tmp_path / "ft.pt")
    letters = write_dict(tmp_path / "letters.txt")
    assert main(["--from", "fairseq", str(tmp_path / "ft.pt"), str(tmp_path / "out"), "--dict", str(letters)]) == 0
    assert "fairseq's 2020 defaults assumed: extractor_mode='default'" in capsys.readouterr().out
    model = load(tmp_path / "out")
    assert model.tokens == ["<blank>", "<pad>", "</s>", "<unk>"] + LETTERS
    wav = torch.randn(1, 2500)
    assert (model(wav)[0] - hf_logits(hf, wav)).abs().max().item() < 1e-4

    # An existing model directory is kept unless --overwrite.
    argv = ["--from", "fairseq", str(tmp_path / "ft.pt"), str(tmp_path / "out"), "--dict", str(letters), "--normalize"]
    assert main(argv) == 1
    assert "already holds a model" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert load(tmp_path / "out").config.normalize_waveform


def test_errors_are_one_line_with_the_culprit(tmp_path, capsys):
    hf = tiny_hf_model("post_ln_group")
    torch.save(finetuned_checkpoint(hf, "cfg"), tmp_path / "ft.pt")
    assert main(["--from", "fairseq", str(tmp_path / "ft.pt"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("asrc-convert: error: ") and "dict.ltr.txt" in err and "--dict" in err
    assert not (tmp_path / "out").exists()


def test_console_script_help():
    result = subprocess.run([sys.executable, "-m", "asrc.bin.convert", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--from {hf,fairseq}" in result.stdout
