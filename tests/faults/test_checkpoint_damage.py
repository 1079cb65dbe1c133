"""Damaged checkpoints: asrc-convert and model loading name the file and what is wrong, in one line."""

import json
import random
import re
import shutil

import pytest
import torch
from safetensors.torch import save_file

from asrc.bin.convert import main as convert
from asrc.errors import AsrcError, CheckpointError
from asrc.models import load
from fault_helpers import LETTERS, save_tiny_model



def error_line(err: str, prog: str) -> str:
    """The one line of ``err``, checked to be ``PROG: error: ...`` and no traceback."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


def noise(n: int) -> bytes:
    """Bytes that are neither a zip archive nor a pickle (the same on every run)."""
    return b"\x13" + random.Random(0).randbytes(n - 1)


def torch_file(path, legacy=False, keep=None, obj=None):
    """``torch.save`` of a small checkpoint, cut to ``keep`` of its bytes."""
    obj = {"model": {"w2v_encoder.proj.weight": torch.zeros(32, 16)}} if obj is None else obj
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    if keep is not None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return path


FAIRSEQ_DAMAGE = {
    "random bytes": (lambda p: p.write_bytes(noise(4096)), r"not a PyTorch checkpoint \(neither a zip archive"),
    "truncated zip": (lambda p: torch_file(p, keep=0.5), r"truncated PyTorch checkpoint \(a zip archive of \d+ bytes"),
    "truncated legacy pickle": (lambda p: torch_file(p, legacy=True, keep=0.5), r"truncated or damaged legacy"),
    "empty": (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    "directory": (lambda p: p.mkdir(), r"is a directory, not a checkpoint file"),
}


@pytest.mark.parametrize("damage", list(FAIRSEQ_DAMAGE))
def test_convert_fairseq_damaged_checkpoint(tmp_path, capsys, damage):
    make, what = FAIRSEQ_DAMAGE[damage]
    ckpt = tmp_path / "ft.pt"
    make(ckpt)
    (tmp_path / "dict.ltr.txt").write_text("E 10\nT 5\n")
    assert convert(["--from", "fairseq", str(ckpt), str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    line = error_line(captured.err, "asrc-convert")
    assert re.match(rf"asrc-convert: error: {re.escape(str(ckpt))}: {what}", line), line
    assert captured.out == "" and not (tmp_path / "out").exists()


def hf_folder(path, config=None, weights=None, vocab=None):
    """The files of a Hugging Face folder; weights: ``{name: tensor}`` as model.safetensors."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps({} if config is None else config))
    (path / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
    save_file({"lm_head.weight": torch.zeros(32, 16)} if weights is None else weights, str(path / "model.safetensors"))
    if vocab is not None:
        (path / "vocab.json").write_text(json.dumps(vocab))
    return path


def cut(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


HF_DAMAGE = {
    "truncated safetensors header": (lambda d: cut(d / "model.safetensors", 20), "model.safetensors",
                                     r"truncated safetensors file: its header needs \d+ bytes, the file has 20"),
    "truncated safetensors data": (lambda d: cut(d / "model.safetensors", 200), "model.safetensors",
                                   r"truncated safetensors file: its header promises \d+ bytes, the file has 200"),
    "empty safetensors": (lambda d: cut(d / "model.safetensors", 0), "model.safetensors", r"empty file \(0 bytes\)"),
    "random safetensors": (lambda d: (d / "model.safetensors").write_bytes(noise(4096)), "model.safetensors",
                           r"not a safetensors file"),
    "truncated pytorch_model.bin": (
        lambda d: ((d / "model.safetensors").unlink(), torch_file(d / "pytorch_model.bin", keep=0.5,
                                                                  obj={"lm_head.weight": torch.zeros(32, 16)})),
        "pytorch_model.bin", r"truncated PyTorch checkpoint"),
    "config.json is a list": (lambda d: (d / "config.json").write_text("[]"), "config.json",
                              r"expected a JSON object \(\{\.\.\.\}\), got list"),
    "config.json cut short": (lambda d: (d / "config.json").write_text('{"hidden_size": 7'), "config.json",
                              r"not valid JSON"),
    "config.json value of the wrong type": (lambda d: (d / "config.json").write_text('{"hidden_size": "768"}'),
                                            "config.json", r"hidden_size='768' \(expected an integer\)"),
    "config.json list of the wrong type": (lambda d: (d / "config.json").write_text('{"conv_dim": 512}'),
                                           "config.json", r"conv_dim=512 \(expected a list of integers\)"),
    "vocab.json is a list": (lambda d: (d / "vocab.json").write_text('["a"]'), "vocab.json",
                             r"expected a JSON object"),
}


@pytest.mark.parametrize("damage", list(HF_DAMAGE))
def test_convert_hf_damaged_folder(tmp_path, capsys, damage):
    make, culprit, what = HF_DAMAGE[damage]
    src = hf_folder(tmp_path / "hf", vocab={t: i for i, t in enumerate(LETTERS)})
    make(src)
    assert convert(["--from", "hf", str(src), str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    line = error_line(captured.err, "asrc-convert")
    assert re.match(rf"asrc-convert: error: {re.escape(str(src / culprit))}: {what}", line), line
    assert captured.out == "" and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"))


MODEL_DAMAGE = {
    "truncated": (lambda p: cut(p, p.stat().st_size // 2), r"truncated PyTorch checkpoint"),
    "empty": (lambda p: cut(p, 0), r"empty file \(0 bytes\)"),
    "random bytes": (lambda p: p.write_bytes(noise(4096)), r"not a PyTorch checkpoint"),
    "not a state dict": (lambda p: torch.save([1, 2], p),
                         r"expected a state dict \(parameter name -> tensor\), got list"),
}


@pytest.mark.parametrize("damage", list(MODEL_DAMAGE))
def test_load_damaged_model_pth(model_dir, tmp_path, damage):
    make, what = MODEL_DAMAGE[damage]
    d = shutil.copytree(model_dir, tmp_path / "m")
    make(d / "model.pth")
    with pytest.raises(CheckpointError) as e:
        load(d)
    assert re.match(rf"{re.escape(str(d / 'model.pth'))}: {what}", str(e.value)) and "\n" not in str(e.value)


def test_load_int8_dir_without_quantization_yaml(model_dir, tmp_path):
    from asrc.quant import quantize_model
    from asrc.models.quantized import save_quantized

    qmodel, spec = quantize_model(load(model_dir), "dynamic")
    save_quantized(qmodel, spec, tmp_path / "int8")
    assert load(tmp_path / "int8").quantization.mode == "dynamic"
    (tmp_path / "int8" / "quantization.yaml").unlink()
    with pytest.raises(CheckpointError) as e:
        load(tmp_path / "int8")
    message = str(e.value)
    # One sentence that says what to do, not the ~300 keys load_state_dict would list.
    assert message.startswith(f"{tmp_path / 'int8' / 'model.pth'}: int8 weights (asrc-quantize output), but ")
    assert "no quantization.yaml" in message and "missing keys" not in message and len(message) < 300


def test_quantization_yaml_value_of_the_wrong_type(model_dir, tmp_path):
    from asrc.quant import quantize_model
    from asrc.models.quantized import save_quantized

    qmodel, spec = quantize_model(load(model_dir), "dynamic")
    save_quantized(qmodel, spec, tmp_path / "int8")
    path = tmp_path / "int8" / "quantization.yaml"
    path.write_text(re.sub(r"(?m)^engine: .*$", "engine: 5", path.read_text()))
    with pytest.raises(AsrcError, match=rf"^{re.escape(str(path))}: engine=5 \(expected a string\)$"):
        load(tmp_path / "int8")


def test_long_key_lists_are_cut(model_dir, tmp_path):
    d = shutil.copytree(model_dir, tmp_path / "m")
    state = torch.load(d / "model.pth", weights_only=True)
    torch.save({f"x.{k}": v for k, v in state.items()}, d / "model.pth")
    with pytest.raises(CheckpointError) as e:
        load(d)
    n = len(state)
    assert f"and {n - 8} more" in str(e.value) and str(e.value).count("x.") == 8
