"""A damaged model directory (config.yaml, model.pth) is one line naming the file and what is
wrong, in asrc.models.load and so in every command, asrc-info included; never a traceback, never
output from a model that cannot give any (NaN weights, an empty config read as wav2vec2-base)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asrc.errors import CheckpointError, ConfigError
from asrc.models import Wav2Vec2Config, load
from fault_helpers import save_tiny_model

REPO = Path(__file__).resolve().parents[2]


def error_line(err: str, prog: str) -> str:
    """The one line of ``err``, checked to be ``PROG: error: ...`` and no traceback."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture
def m(model_dir, tmp_path):
    """A copy of the tiny model directory, to damage."""
    return shutil.copytree(model_dir, tmp_path / "m")


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("wav") / "a.wav"
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32), 16000)
    return path


def poison(path, value=float("nan"), count=3, which=(1,)):
    """Set ``count`` values of the float tensors number ``which`` of the state dict in ``path``."""
    state = torch.load(path, weights_only=True)
    names = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    for i in which:
        state[names[i]].view(-1)[:count] = value
    torch.save(state, path)
    return names


# Non-finite weights.


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_load_rejects_non_finite_weights(m, value):
    names = poison(m / "model.pth", value, count=3, which=(1, 4))
    with pytest.raises(CheckpointError) as e:
        load(m)
    message = str(e.value)
    assert message.startswith(f"{m / 'model.pth'}: {names[1]} has 3 NaN/Inf values (of ")
    assert "; 1 more tensor has some;" in message and "\n" not in message


def test_transcribe_and_info_refuse_nan_weights(m, wav, capsys):
    from asrc.bin.info import main as info
    from asrc.bin.transcribe import main as transcribe

    names = poison(m / "model.pth", which=(0,), count=1)
    commands = {"asrc-transcribe": lambda: transcribe([str(m), str(wav)]), "asrc-info": lambda: info([str(m)])}
    for prog, main in commands.items():
        assert main() == 1
        captured = capsys.readouterr()
        line = error_line(captured.err, prog)
        assert f"m/model.pth: {names[0]} has 1 NaN/Inf values" in line
        assert captured.out == ""


def test_nan_in_an_int8_model_dir(m):
    """An int8 directory loads through io.read_state_dict too: clean, it loads; NaN in a float
    tensor, in the bias packed with an int8 Linear or in a quantized tensor's scales is refused."""
    from asrc.models.quantized import save_quantized
    from asrc.quant import quantize_model

    torch.manual_seed(0)
    qmodel, spec = quantize_model(load(m), "static-conv", [0.1 * torch.randn(16000)])
    q = m.parent / "q"
    save_quantized(qmodel, spec, q)
    clean = (q / "model.pth").read_bytes()
    assert load(q).quantization.mode == "static-conv"

    state = torch.load(q / "model.pth", weights_only=True)
    packed = next(k for k in state if k.endswith("_packed_params._packed_params"))
    weight, bias = state[packed]
    state[packed] = (weight, torch.full_like(bias, float("nan")))
    torch.save(state, q / "model.pth")
    with pytest.raises(CheckpointError, match=rf"q/model\.pth: {re.escape(packed)}\[1\] has {bias.numel()} NaN/Inf"):
        load(q)

    (q / "model.pth").write_bytes(clean)
    state = torch.load(q / "model.pth", weights_only=True)
    name = next(k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_quantized)
    t = state[name]
    scales = torch.full_like(t.q_per_channel_scales(), float("nan")) if t.qscheme() in (
        torch.per_channel_affine, torch.per_channel_symmetric) else None
    if scales is not None:
        state[name] = torch._make_per_channel_quantized_tensor(t.int_repr(), scales, t.q_per_channel_zero_points(),
                                                               t.q_per_channel_axis())
    else:
        state[name] = torch._make_per_tensor_quantized_tensor(t.int_repr(), float("nan"), t.q_zero_point())
    torch.save(state, q / "model.pth")
    with pytest.raises(CheckpointError, match=rf"q/model\.pth: {re.escape(name)} has \d+ NaN/Inf"):
        load(q)

    (q / "model.pth").write_bytes(clean)
    poison(q / "model.pth", which=(0,))
    with pytest.raises(CheckpointError, match=r"q/model\.pth: .* has 3 NaN/Inf values"):
        load(q)


def test_nan_in_an_espnet_experiment(tmp_path, monkeypatch):
    """An asrc-train experiment (ESPnet config.yaml + checkpoints) gets the same check."""
    import asrc.models.loader as loader

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text("encoder: wav2vec2\n")
    (exp / "valid.loss.ave.pth").write_bytes(b"")
    model = load(save_tiny_model(tmp_path / "tiny"))
    with torch.no_grad():
        model.ctc_head.weight[0, 0] = float("nan")
    monkeypatch.setattr(loader, "read_experiment", lambda d: model)
    with pytest.raises(CheckpointError, match=r"exp/valid\.loss\.ave\.pth: ctc_head\.weight has 1 NaN/Inf values"):
        load(exp)


# A damaged config.yaml.


@pytest.mark.parametrize("text,what", [
    ("", r"is empty \(no Wav2Vec2Config keys\)"),
    ("# nothing but a comment\n", r"is empty \(no Wav2Vec2Config keys\)"),
    ("{}\n", r"is empty \(no Wav2Vec2Config keys\)"),
    ("[]\n", r"expected a mapping of config keys, got list"),
    ("0\n", r"expected a mapping of config keys, got int"),
])
def test_empty_or_non_mapping_config_yaml(m, wav, capsys, text, what):
    from asrc.bin.info import main as info
    from asrc.bin.transcribe import main as transcribe

    (m / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match=rf"m/config\.yaml: {what}"):
        load(m)
    commands = {"asrc-transcribe": lambda: transcribe([str(m), str(wav)]), "asrc-info": lambda: info([str(m)])}
    for prog, main in commands.items():
        assert main() == 1
        captured = capsys.readouterr()
        assert re.search(rf"m/config\.yaml: {what}", error_line(captured.err, prog))
        assert captured.out == ""


def test_architecture_only_dir_with_empty_config_yaml(m, capsys):
    from asrc.bin.info import main as info

    (m / "model.pth").unlink()
    (m / "config.yaml").write_text("")
    assert info([str(m)]) == 1
    assert re.search(r"m/config\.yaml: is empty", error_line(capsys.readouterr().err, "asrc-info"))


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


MODEL_PTH_DAMAGE = {
    "truncated": (truncate, r"truncated PyTorch checkpoint"),
    "empty": (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
    "garbage": (lambda p: p.write_bytes(b"\x13" + bytes(range(256)) * 8), r"not a PyTorch checkpoint"),
    "nan": (lambda p: poison(p), r"\S+ has 3 NaN/Inf values"),
    "wrong shapes": (lambda p: torch.save({"w": torch.zeros(2)}, p), r"missing keys"),
}


@pytest.mark.parametrize("damage", list(MODEL_PTH_DAMAGE))
def test_info_loads_the_weights(m, capsys, damage):
    """asrc-info has no header-only mode: it reads model.pth as every command does."""
    from asrc.bin.info import main as info

    make, what = MODEL_PTH_DAMAGE[damage]
    make(m / "model.pth")
    assert info([str(m)]) == 1
    captured = capsys.readouterr()
    assert re.search(rf"m/model\.pth: {what}", error_line(captured.err, "asrc-info"))
    assert captured.out == ""


# Wrong types and impossible values in config.yaml.

BAD_VALUES = {
    "num_layers: twelve": r"num_layers='twelve' is not an integer",
    "num_layers:": r"num_layers has no value \(expected an integer\)",
    "conv_layers: 5": r"conv_layers=5 is not a list of \[channels, kernel, stride\] lists of integers",
    "conv_layers: [[8, 10, x]]": r"conv_layers=\[\[8, 10, 'x'\]\] is not a list of",
    "conv_layers: [[8, 10.5, 5]]": r"conv_layers=\[\[8, 10.5, 5\]\] is not a list of",
    "dropout: abc": r"dropout='abc' is not a number",
    "dropout: 2": r"dropout=2 is not in \[0, 1\]",
    "layer_norm_eps: abc": r"layer_norm_eps='abc' is not a number",
    "layer_norm_eps: 1e-5": r"layer_norm_eps='1e-5' is not a number \(YAML reads 1e-5 as a string",
    "layer_norm_eps: 0": r"layer_norm_eps=0 must be > 0",
    "layer_norm_eps: .nan": r"layer_norm_eps=nan must be > 0",
    "embed_dim: -192": r"embed_dim=-192 must be >= 1",
    "embed_dim: 16.0": r"embed_dim=16.0 is not an integer",
    "pos_conv_kernel: 0": r"pos_conv_kernel=0 must be >= 1",
    "pos_conv_groups: 0": r"pos_conv_groups=0 must be >= 1",
    "num_heads: 0": r"num_heads=0 must be >= 1",
    "ffn_dim: 0": r"ffn_dim=0 must be >= 1",
    "layer_reuse: 0": r"layer_reuse=0 must be >= 1",
    "mask_time_length: 0": r"mask_time_length=0 must be >= 1",
    "conv_bias: 1": r"conv_bias=1 is not true or false",
    "extractor_mode: [group_norm]": r"extractor_mode=\['group_norm'\] is not a string",
    "vocab_size: '32'": r"vocab_size='32' is not an integer",
    "attention_head_dim: 8.5": r"attention_head_dim=8.5 is not an integer >= 1 \(or null\)",
    "layer_ffn_dims: [32, x]": r"layer_ffn_dims=\[32, 'x'\] is not a list of integers >= 0 \(or null\)",
}


@pytest.mark.parametrize("line", list(BAD_VALUES))
def test_bad_values_name_the_file_and_key(m, capsys, line):
    from asrc.bin.info import main as info

    config = m / "config.yaml"
    config.write_text(config.read_text() + line + "\n")  # the last of a repeated key wins
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(config))}: invalid Wav2Vec2Config: {BAD_VALUES[line]}"):
        load(m)
    for path in (m, config):  # a model directory, a config file alone
        assert info([str(path)]) == 1
        captured = capsys.readouterr()
        assert re.search(rf"m/config\.yaml: invalid Wav2Vec2Config: {BAD_VALUES[line]}",
                         error_line(captured.err, "asrc-info"))
        assert captured.out == ""


def test_every_problem_in_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("num_layers: twelve\ndropout: abc\nembed_dim: -192\nnum_heads: 0\npos_conv_kernel: 0\n")
    with pytest.raises(ConfigError) as e:
        Wav2Vec2Config.from_yaml(path)
    assert str(e.value) == (f"{path}: invalid Wav2Vec2Config: num_layers='twelve' is not an integer; "
                            "dropout='abc' is not a number; embed_dim=-192 must be >= 1; num_heads=0 must be >= 1; "
                            "pos_conv_kernel=0 must be >= 1")


def test_from_dict_names_its_source_and_the_constructor_raises_config_errors():
    with pytest.raises(ConfigError, match=r"^teacher/config\.yaml: invalid Wav2Vec2Config: num_heads=0 must be >= 1$"):
        Wav2Vec2Config.from_dict({"num_heads": 0}, source="teacher/config.yaml")
    for bad in (dict(conv_layers=5), dict(num_layers=None), dict(layer_norm_eps="x"), dict(conv_layers=[[1, "a", 2]])):
        with pytest.raises(ConfigError, match=r"^invalid Wav2Vec2Config: "):
            Wav2Vec2Config(**bad)


def test_numpy_integers_and_tuples_are_accepted():
    cfg = Wav2Vec2Config(conv_layers=((np.int64(8), 10, 5), (8, 3, 2)), embed_dim=np.int64(16), ffn_dim=32,
                         num_heads=2, num_layers=2, pos_conv_kernel=4, pos_conv_groups=2, layer_ffn_dims=(32, 0),
                         dropout=0, layer_norm_eps=1e-6)
    assert type(cfg.embed_dim) is int and cfg.conv_layers == [[8, 10, 5], [8, 3, 2]]
    assert type(cfg.conv_layers[0][0]) is int and cfg.layer_ffn_dims == [32, 0]
    assert Wav2Vec2Config.from_yaml(cfg.to_yaml()) == cfg


# A reader of the output that goes away.


def test_closed_output_pipe_ends_quietly():
    """``asrc-info ... | head -1``: no "error: [Errno 32] Broken pipe", a non-zero status."""
    read, write = os.pipe()
    os.close(read)  # the reader has gone before the first write: deterministic EPIPE
    try:
        p = subprocess.run([sys.executable, "-m", "asrc.bin.info", str(REPO / "egs" / "an4" / "teacher")],
                           stdout=write, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=300)
    finally:
        os.close(write)
    assert p.returncode == 1 and p.stderr == "", p.stderr


def test_broken_pipe_to_a_subprocess_is_still_reported():
    """A ``BrokenPipeError`` while stdout is fine (a pipe to a child that exited) is not hidden."""
    script = ("import subprocess, sys\n"
              "from asrc.bin._cli import command\n"
              "@command('asrc-x')\n"
              "def main(argv=None):\n"
              "    child = subprocess.Popen([sys.executable, '-c', ''], stdin=subprocess.PIPE)\n"
              "    child.wait()\n"
              "    child.stdin.write(b'x' * 1000000)\n"
              "    child.stdin.flush()\n"
              "sys.exit(main([]))\n")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode != 0 and "BrokenPipeError" in p.stderr, p.stderr


def test_forward_refuses_audio_it_would_turn_into_nonsense():
    """The Python API: NaN audio gave NaN logits (float), a traceback (dynamic int8) or plausible
    numbers (static int8); integer samples a bare torch error. Float64 (numpy's default) is taken."""
    import torch

    from asrc.models import Wav2Vec2Config, build_model

    torch.manual_seed(0)
    model = build_model(Wav2Vec2Config(conv_layers=[[8, 10, 5], [8, 3, 2]], embed_dim=16, ffn_dim=32, num_heads=2,
                                       num_layers=1, pos_conv_kernel=4, pos_conv_groups=2, vocab_size=5)).eval()
    wav = 0.1 * torch.randn(2, 4000)
    bad = wav.clone()
    bad[1, 7] = float("nan")
    with torch.no_grad():
        with pytest.raises(ValueError, match="wav has 1 non-finite samples"):
            model(bad)
        with pytest.raises(ValueError, match="got torch.int16"):
            model((wav * 32768).short())
        torch.testing.assert_close(model(wav.double())[0], model(wav)[0])


def test_conv_groups_that_group_nothing_is_an_error():
    from asrc.errors import ConfigError
    from asrc.models import Wav2Vec2Config

    with pytest.raises(ConfigError, match=r"conv_groups=3 divides the channels of no conv layer \(\[16, 16, 16\]\)"):
        Wav2Vec2Config(conv_layers=[[16, 10, 5], [16, 3, 2], [16, 3, 2]], conv_groups=3)
    assert Wav2Vec2Config(conv_layers=[[16, 10, 5], [16, 3, 2], [16, 3, 2]], conv_groups=2).conv_groups == 2


def test_info_names_what_it_was_given_wrong(tmp_path, capsys):
    """asrc-info on a student spec (recipes' conf/student.yaml) said 'unknown keys'; --seconds 0
    did not name the flag."""
    from asrc.bin.info import main as info_main

    spec = tmp_path / "student.yaml"
    spec.write_text("layers:\n    num: 4\narchitecture:\n    conv_groups: 2\n")
    assert info_main([str(spec)]) == 1
    assert "a student spec (sections ['architecture', 'layers']), not a model config" in capsys.readouterr().err
    teacher = os.path.join(os.path.dirname(__file__), "..", "..", "egs", "an4", "teacher")
    with pytest.raises(SystemExit):
        info_main([teacher, "--seconds", "0"])
    assert "--seconds 0: a clip must be finite and at least the model's receptive field" in capsys.readouterr().err


def test_qat_conversion_of_a_model_directory_says_what_it_needs(tmp_path):
    from asrc.errors import AsrcError
    from asrc.quant.quantize_dir import quantize_dir

    teacher = os.path.join(os.path.dirname(__file__), "..", "..", "egs", "an4", "teacher")
    with pytest.raises(AsrcError, match="--mode qat converts an asrc-train experiment .* is a model directory"):
        quantize_dir(teacher, tmp_path / "q", "qat")
    assert not (tmp_path / "q").exists()


def test_footprint_names_the_default_preset_that_does_not_fit(tmp_path, capsys):
    from asrc.bin.bench import main as bench_main

    teacher = save_tiny_model(tmp_path / "t", num_layers=2)
    assert bench_main(["footprint", "--teacher", str(teacher), "--no-peer", "--no-onnx", "--no-int8", "--seconds", "1",
                       "--runs", "1", "--workdir", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert "student preset 'student-4L-g2' (a default preset; choose with --student-preset or --student)" in err
