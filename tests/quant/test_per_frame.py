"""Per-frame input ranges of the int8 CNN (``asrc-quantize --conv-activations per-frame``)."""

import pytest
import torch
import yaml

from asrc.errors import AsrcError, CheckpointError, ConfigError
from asrc.models import load
from asrc.models import int8_cnn
from asrc.models.int8 import Int8Conv1d, affine_qparams
from asrc.models.int8_cnn import int8_chain
from asrc.models.io import save_model_dir
from asrc.models.quantized import save_quantized
from asrc.models.wav2vec2 import plain_ops
from asrc.quant import quantize_model
from asrc.quant.calibrate import ConvQuantOptions
from quant_helpers import write_wav_dir

PER_FRAME = ConvQuantOptions(activations="per-frame")


def _loud_then_quiet(channels: int, frames: int, gen: torch.Generator) -> torch.Tensor:
    """``[1, channels, frames]``: GELU-like activations, the second half 1000 times quieter."""
    x = torch.nn.functional.gelu(torch.randn(1, channels, frames, generator=gen) * 2)
    x[:, :, frames // 2:] *= 1e-3
    return x


def _frame_errors(y: torch.Tensor, ref: torch.Tensor):
    """Relative error per output frame, ``(loud half, quiet half)`` means."""
    err = (y - ref).norm(dim=1) / ref.norm(dim=1)
    half = err.shape[-1] // 2
    return float(err[..., :half - 2].mean()), float(err[..., half + 2:].mean())


def test_per_frame_conv_keeps_quiet_frames_that_a_calibrated_range_loses():
    """The int8 conv layer itself against the float conv: with one calibrated input range, the
    frames 60 dB below the loud ones come out as noise; with per-frame ranges every frame is close."""
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv1d(16, 16, 3, stride=2, groups=2, bias=False)  # a bias would hide the quiet frames
    x = _loud_then_quiet(16, 200, gen)
    with torch.no_grad():
        ref = conv(x)
        out_range = (float(ref.min()), float(ref.max()))
        static = Int8Conv1d.from_qparams(conv, affine_qparams(float(x.min()), float(x.max()), 255),
                                         affine_qparams(*out_range, 255))
        frame = Int8Conv1d.from_qparams(conv, (1.0, 0), (1.0, 0), per_frame=True)
        static_loud, static_quiet = _frame_errors(static(x), ref)
        frame_loud, frame_quiet = _frame_errors(frame(x), ref)
    assert static_loud < 0.05 and frame_loud < 0.05
    assert static_quiet > 0.5  # the quiet frames' inputs round to a code or two
    assert frame_quiet < 0.05


def test_per_frame_conv_ranges_are_per_frame_and_group():
    """Each frame of each group is quantized over its own range: values 1e-4 beside values of 5
    in other frames and the other group come through to within a code of their own."""
    conv = torch.nn.Conv1d(4, 2, 2, stride=2, groups=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 1, 0] = 1.0  # group 0's output: channel 1, first frame of the window
        conv.weight[1, 0, 1] = 1.0  # group 1's output: channel 2, second frame of the window
        x = torch.zeros(1, 4, 8)
        x[0, 1] = torch.tensor([1e-4, 0, 2e-4, 0, 3e-4, 0, 4e-4, 0])
        x[0, 2] = torch.tensor([0, 5.0, 0, 6.0, 0, 7.0, 0, 8.0])
        frame = Int8Conv1d.from_qparams(conv, (1.0, 0), (1.0, 0), per_frame=True)
        y = frame(x)
    w = frame.weight()  # the int8 kernel, dequantized: weight 1 within its rounding
    assert torch.allclose(y[0, 0], torch.tensor([1e-4, 2e-4, 3e-4, 4e-4]) * w[0, 1, 0], rtol=1e-2)
    assert torch.allclose(y[0, 1], torch.tensor([5.0, 6.0, 7.0, 8.0]) * w[1, 0, 1], rtol=1e-2)


@pytest.fixture(scope="module")
def per_frame_model(trained_tiny, calibration_set):
    return quantize_model(trained_tiny, "static-conv", calibration_set, options=PER_FRAME)


def test_quantize_marks_the_cnn_convs_only(per_frame_model):
    qmodel, spec = per_frame_model
    cnn = [n for n in spec.static_int8_conv if n.startswith("feature_extractor.")]
    assert cnn and spec.per_frame_int8_conv == cnn
    for name in spec.static_int8_conv:
        assert qmodel.get_submodule(name).per_frame == (name in cnn)
    assert spec.calibration["conv_activations"] == "per-frame"


def test_cpu_chain_matches_the_module_path(per_frame_model, trained_tiny, structured_set):
    """The chain (oneDNN's int8 matmul on per-row codes, zero points and scales outside it)
    computes what the modules compute, up to codes flipped at rounding boundaries; where it
    cannot run (no oneDNN, or 8-bit codes without VNNI) the module path runs."""
    qmodel, _ = per_frame_model
    extractor = qmodel.feature_extractor
    chain = int8_chain(extractor)
    if not int8_cnn.Int8ConvChain.fusable(extractor):
        assert chain is None
        return
    assert chain is not None and chain.per_frame
    wav = torch.stack([w[:structured_set[0].numel()] for w in structured_set])
    lengths = torch.tensor([wav.shape[1], wav.shape[1] - 3000, wav.shape[1], wav.shape[1] - 7001])
    with torch.inference_mode():
        fast, fast_lengths = extractor(wav, lengths)
        with plain_ops():
            ref, ref_lengths = extractor(wav, lengths)
    assert torch.equal(fast_lengths, ref_lengths)
    rel = float((fast - ref).norm() / ref.norm())
    assert rel < 5e-3  # a code flipped at a rounding boundary moves what follows it
    with torch.inference_mode():
        float_feats, _ = trained_tiny.feature_extractor(wav, lengths)
    assert float((fast - float_feats).norm() / float_feats.norm()) < 0.05


def test_chain_is_rebuilt_when_the_activations_change(per_frame_model, trained_tiny, calibration_set):
    qmodel, _ = per_frame_model
    if not int8_cnn.Int8ConvChain.fusable(qmodel.feature_extractor):
        pytest.skip("the per-frame chain needs oneDNN's fused form (with VNNI for 8-bit codes)")
    static, _ = quantize_model(trained_tiny, "static-conv", calibration_set)
    assert int8_chain(qmodel.feature_extractor).per_frame
    assert not int8_chain(static.feature_extractor).per_frame


def test_per_frame_is_closer_to_float_than_calibrated_ranges_on_quiet_audio(trained_tiny, calibration_set,
                                                                             structured_set):
    """End to end, on an utterance whose second half is 40 dB down: the CNN features of the quiet
    half stay near the float model's with per-frame ranges, not with calibrated ones."""
    per_frame, _ = quantize_model(trained_tiny, "static-conv", calibration_set, options=PER_FRAME)
    static, _ = quantize_model(trained_tiny, "static-conv", calibration_set)
    wav = structured_set[-1].clone()
    wav[wav.numel() // 2:] *= 0.01
    lengths = torch.tensor([wav.numel()])
    with torch.inference_mode():
        ref, _ = trained_tiny.feature_extractor(wav[None], lengths)
        errors = {}
        for name, q in (("per-frame", per_frame), ("static", static)):
            feats, _ = q.feature_extractor(wav[None], lengths)
            half = feats.shape[-1] // 2
            quiet = slice(half + 2, None)
            errors[name] = float((feats[..., quiet] - ref[..., quiet]).norm() / ref[..., quiet].norm())
    assert errors["per-frame"] < 0.5 * errors["static"]


def test_round_trip_and_torchscript(tmp_path, per_frame_model, structured_set):
    from asrc.quant.export import export_torchscript

    qmodel, spec = per_frame_model
    save_quantized(qmodel, spec, tmp_path / "q")
    saved = yaml.safe_load((tmp_path / "q" / "quantization.yaml").read_text())
    assert saved["per_frame_int8_conv"] == spec.per_frame_int8_conv
    loaded = load(tmp_path / "q")
    for name in spec.static_int8_conv:
        assert loaded.get_submodule(name).per_frame == (name in spec.per_frame_int8_conv)
    wav = structured_set[1][None]
    lengths = torch.tensor([wav.shape[1]])
    with torch.inference_mode():
        want = qmodel(wav, lengths)[0]
        assert torch.allclose(loaded(wav, lengths)[0], want, atol=1e-5)
        with plain_ops():
            plain = qmodel(wav, lengths)[0]
    path = export_torchscript(qmodel, tmp_path / "q.pt")
    traced = torch.jit.load(str(path))
    with torch.inference_mode():
        got = traced(wav, lengths)
    got = got[0] if isinstance(got, (tuple, list)) else got
    assert torch.allclose(got, plain, atol=1e-4)


def test_refusals(tmp_path, trained_tiny, calibration_set, per_frame_model):
    from asrc.quant.export import export_onnx

    with pytest.raises(ConfigError, match="per-frame"):
        quantize_model(trained_tiny, "static-pos", calibration_set, options=PER_FRAME)
    with pytest.raises(ConfigError, match="conv activations"):
        ConvQuantOptions(activations="per-channel")
    qmodel, spec = per_frame_model
    with pytest.raises(AsrcError, match="per frame"):
        export_onnx(qmodel, tmp_path / "q.onnx")
    save_quantized(qmodel, spec, tmp_path / "q")
    path = tmp_path / "q" / "quantization.yaml"
    d = yaml.safe_load(path.read_text())
    d["per_frame_int8_conv"] = ["encoder.layers.0.fc1"]
    path.write_text(yaml.safe_dump(d))
    with pytest.raises(CheckpointError, match="per_frame_int8_conv"):
        load(tmp_path / "q")


def test_bias_correction_of_per_frame_convs(trained_tiny, calibration_set):
    """Bias correction reads a per-frame conv's output as its accumulator (it is not requantized)."""
    plain, _ = quantize_model(trained_tiny, "static-conv", calibration_set, options=PER_FRAME)
    corrected, spec = quantize_model(trained_tiny, "static-conv", calibration_set,
                                     options=ConvQuantOptions(activations="per-frame", bias_correction="cnn"))
    name = spec.per_frame_int8_conv[0]
    before = plain.get_submodule(name).bias()
    before = torch.zeros(plain.get_submodule(name).conv.out_channels) if before is None else before
    assert float((corrected.get_submodule(name).bias() - before).abs().max()) > 0
    assert spec.calibration["bias_shift_max"] > 0


def test_quantize_cli(tmp_path, trained_tiny, calibration_set, capsys):
    from asrc.bin.quantize import main

    save_model_dir(trained_tiny, tmp_path / "float")
    write_wav_dir(tmp_path / "data", calibration_set)
    assert main([str(tmp_path / "float"), str(tmp_path / "q"), "--mode", "static-conv", "--calib",
                 str(tmp_path / "data"), "--conv-activations", "per-frame"]) == 0
    spec = yaml.safe_load((tmp_path / "q" / "quantization.yaml").read_text())
    assert spec["calibration"]["conv_activations"] == "per-frame" and spec["per_frame_int8_conv"]
    # flags a mode would ignore are refused; a mode without CNN convs is refused
    assert main([str(tmp_path / "float"), str(tmp_path / "q2"), "--conv-activations", "per-frame"]) == 1
    assert main([str(tmp_path / "float"), str(tmp_path / "q3"), "--mode", "static-pos", "--calib",
                 str(tmp_path / "data"), "--conv-activations", "per-frame"]) == 1
    err = capsys.readouterr().err
    assert "--conv-activations" in err and "static-conv" in err


def test_without_the_fused_form_the_modules_run(per_frame_model, structured_set, monkeypatch):
    """Where oneDNN's int8 matmul is missing (or 8-bit codes would saturate without VNNI), a
    per-frame model runs its modules (the float arithmetic of the int8 values): same output."""
    qmodel, _ = per_frame_model
    wav = structured_set[2][None]
    with torch.inference_mode():
        with plain_ops():
            want, _ = qmodel.feature_extractor(wav, None)
        monkeypatch.setattr(int8_cnn, "fused_available", lambda: False)
        assert int8_chain(qmodel.feature_extractor) is None
        got, _ = qmodel.feature_extractor(wav, None)
    assert torch.equal(got, want)
