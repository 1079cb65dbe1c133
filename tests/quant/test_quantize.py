import contextlib
import shutil
import warnings

import pytest
import torch
import yaml

from asrc.errors import AsrcError, CheckpointError
from asrc.models import load, save_model_dir
from asrc.models import num_parameters
from asrc.models.int8 import FoldedPositionalConv, Int8Conv1d
from asrc.models.quantized import QuantizationSpec, load_quantized, save_quantized
from asrc.models.wav2vec2 import PositionalConv
from asrc.quant import quantize_model
from asrc.quant.agreement import agreement


@pytest.mark.parametrize("kernel", [16, 15])
def test_folded_positional_conv_equals_weight_norm(kernel):
    torch.manual_seed(0)
    pc = PositionalConv(32, kernel, 4)
    with torch.no_grad():
        pc.weight_g.mul_(torch.rand_like(pc.weight_g) + 0.5)  # g no longer equal to ||v||
    folded = FoldedPositionalConv.from_positional_conv(pc)
    x = torch.randn(2, 37, 32)
    torch.testing.assert_close(folded(x), pc(x), atol=1e-5, rtol=1e-5)


def test_trained_fixture_is_peaked(trained_tiny):
    assert trained_tiny.final_loss < 0.2


@pytest.mark.parametrize("mode", ["dynamic", "static-pos", "static-conv"])
def test_int8_agrees_with_float(trained_tiny, structured_set, calibration_set, mode):
    qmodel, spec = quantize_model(trained_tiny, mode, calibration_set)
    stats = agreement(trained_tiny, qmodel, structured_set)
    # Tolerances: int8 keeps the direction of the logits and the frame decisions.
    assert stats["logit_cosine"] > 0.99
    assert stats["frame_agreement"] > 0.95
    assert stats["greedy_token_error"] < 0.05
    kinds = {type(m) for m in qmodel.modules()}
    assert any(issubclass(k, torch.ao.nn.quantized.dynamic.Linear) for k in kinds)
    assert (Int8Conv1d in kinds) == mode.startswith("static-")
    cnn_int8 = isinstance(qmodel.feature_extractor.conv_layers[1].conv, Int8Conv1d)
    assert cnn_int8 == (mode == "static-conv")
    assert spec.mode == mode and spec.folded_weight_norm == ["encoder.pos_conv"]
    # The float model is untouched.
    assert isinstance(trained_tiny.encoder.pos_conv, PositionalConv)


@pytest.mark.parametrize("mode", ["static-pos", "static-conv"])
def test_int8_positional_conv_follows_the_float_one(trained_tiny, structured_set, calibration_set, mode):
    """The int8 positional conv against the float one on the inputs it gets: the logits alone
    would not notice a broken one (this tiny model barely uses it)."""
    qmodel, _ = quantize_model(trained_tiny, mode, calibration_set)
    assert isinstance(qmodel.encoder.pos_conv.conv, Int8Conv1d)
    inputs = []
    hook = trained_tiny.encoder.pos_conv.register_forward_pre_hook(lambda _m, args: inputs.append(args[0]))
    try:
        with torch.inference_mode():
            for wav in structured_set:
                trained_tiny(wav[None])
    finally:
        hook.remove()
    with torch.inference_mode():
        for x in inputs:
            ref, got = trained_tiny.encoder.pos_conv(x), qmodel.encoder.pos_conv(x)
            assert got.shape == ref.shape
            assert torch.nn.functional.cosine_similarity(got.flatten(), ref.flatten(), dim=0) > 0.99
            assert (got - ref).norm() < 0.1 * ref.norm()


def test_static_conv_quantizes_cnn_after_first_and_pos_conv(trained_tiny, calibration_set):
    qmodel, spec = quantize_model(trained_tiny, "static-conv", calibration_set)
    n = len(trained_tiny.config.conv_layers)
    assert spec.static_int8_conv == [f"feature_extractor.conv_layers.{i}.conv" for i in range(1, n)] + [
        "encoder.pos_conv.conv"]
    assert isinstance(qmodel.feature_extractor.conv_layers[0].conv, torch.nn.Conv1d)
    assert spec.calibration["utterances"] == len(calibration_set)
    # Parameters are counted through the int8 modules too: all but the folded weight_g.
    assert num_parameters(qmodel) == sum(p.numel() for p in trained_tiny.parameters()) - trained_tiny.config.pos_conv_kernel


def test_static_modes_need_calibration(trained_tiny):
    for mode in ("static-pos", "static-conv"):
        with pytest.raises(ValueError, match="calibration"):
            quantize_model(trained_tiny, mode)
    with pytest.raises(ValueError, match="mode"):
        quantize_model(trained_tiny, "int4")


def test_short_calibration_waveform_is_named(trained_tiny):
    with pytest.raises(ValueError, match="calibration waveform 1"):
        quantize_model(trained_tiny, "static-conv", [torch.randn(4000), torch.randn(100)])


@pytest.mark.parametrize("mode", ["dynamic", "static-pos", "static-conv"])
def test_save_load_round_trip(tmp_path, trained_tiny, structured_set, calibration_set, mode):
    qmodel, spec = quantize_model(trained_tiny, mode, calibration_set, calibration_info={"data_dir": "synthetic"})
    save_quantized(qmodel, spec, tmp_path / "q")
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == [
        "config.yaml", "model.pth", "quantization.yaml", "tokens.txt"]
    saved = yaml.safe_load((tmp_path / "q" / "quantization.yaml").read_text())
    assert saved["mode"] == mode and saved["dynamic_int8_linear"] == spec.dynamic_int8_linear
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load(tmp_path / "q")  # through asrc.models.load
    assert not [w for w in caught if "TypedStorage" in str(w.message)]  # torch's internal deprecation, hidden
    assert loaded.tokens == trained_tiny.tokens and loaded.quantization.mode == mode
    wav = torch.stack([structured_set[1][:16000], structured_set[2][:16000]])
    lengths = torch.tensor([16000, 12000])
    with torch.inference_mode():
        a, la = qmodel(wav, lengths)
        b, lb = loaded(wav, lengths)
    assert torch.equal(a, b) and torch.equal(la, lb)
    # int8 weights are smaller on disk than the float ones.
    save_model_dir(trained_tiny, tmp_path / "f")
    assert (tmp_path / "q" / "model.pth").stat().st_size < (tmp_path / "f" / "model.pth").stat().st_size


def test_load_rejects_mismatched_directory(tmp_path, trained_tiny, calibration_set):
    qmodel, spec = quantize_model(trained_tiny, "dynamic")
    save_quantized(qmodel, spec, tmp_path / "q")
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "q", bad)
    text = (bad / "quantization.yaml").read_text().replace("mode: dynamic", "mode: int4")
    (bad / "quantization.yaml").write_text(text)
    with pytest.raises(AsrcError, match="int4"):
        load_quantized(bad)
    # The spec claims static convs that the state dict does not hold.
    spec2 = QuantizationSpec(**{**spec.__dict__, "static_int8_conv": ["feature_extractor.conv_layers.1.conv"]})
    (bad / "quantization.yaml").write_text(spec2.to_yaml())
    with pytest.raises(CheckpointError, match="model.pth"):
        load_quantized(bad)
    spec3 = QuantizationSpec(**{**spec.__dict__, "static_int8_conv": ["encoder.layers.9.fc1"]})
    (bad / "quantization.yaml").write_text(spec3.to_yaml())
    with pytest.raises(CheckpointError, match="encoder.layers.9.fc1"):
        load_quantized(bad)


def test_quantize_cli(tmp_path, trained_tiny, calibration_set, structured_set, capsys):
    import soundfile as sf

    from asrc.bin.quantize import main

    save_model_dir(trained_tiny, tmp_path / "float")
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "wav.scp", "w") as f:
        for i, wav in enumerate(calibration_set + structured_set):
            sf.write(tmp_path / f"u{i}.wav", wav.numpy(), 16000, subtype="PCM_16")
            f.write(f"u{i} {tmp_path / f'u{i}.wav'}\n")
    assert main([str(tmp_path / "float"), str(tmp_path / "q"), "--mode", "static-conv", "--calib", str(data),
                 "--calib-utts", "3", "--check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "frame argmax agree" in out and "5 int8 Conv" not in out
    spec = yaml.safe_load((tmp_path / "q" / "quantization.yaml").read_text())
    assert spec["calibration"]["utterances"] == 3 and spec["calibration"]["data_dir"] == str(data)
    assert len(spec["static_int8_conv"]) == len(trained_tiny.config.conv_layers)  # CNN layers 2..7 + positional conv
    # Refusals: existing output, quantized input, static-conv without calibration.
    assert main([str(tmp_path / "float"), str(tmp_path / "q")]) == 1
    assert main([str(tmp_path / "q"), str(tmp_path / "q2")]) == 1
    assert main([str(tmp_path / "float"), str(tmp_path / "q3"), "--mode", "static-conv"]) == 1
    err = capsys.readouterr().err
    assert "--overwrite" in err and "already quantized" in err and "--calib" in err


@pytest.mark.parametrize("mode", ["dynamic", "static-conv"])
def test_int8_logits_do_not_depend_on_the_batch(trained_tiny, calibration_set, mode):
    """Dynamic int8 layers take their activation scale from the tensor at hand: in a padded
    batch the other utterances changed each one's logits (audit: up to 0.07 on a tiny model, a
    third of a logit on the AN4 teacher) and so asrc-decode's output changed with
    --batch-seconds. Now a batch gives exactly what each utterance gives alone."""
    qmodel, _ = quantize_model(trained_tiny, mode, calibration_set)
    gen = torch.Generator().manual_seed(5)
    lengths = [6000, 2500, 4100]
    wavs = [0.3 * torch.randn(n, generator=gen) for n in lengths]
    batch = torch.zeros(3, max(lengths))
    for i, w in enumerate(wavs):
        batch[i, :len(w)] = w
    batch[1, lengths[1]:] = 0.5  # loud padding: must not matter
    with torch.inference_mode():
        logits, out_lengths = qmodel(batch, torch.tensor(lengths))
        for i, w in enumerate(wavs):
            alone, n = qmodel(w[None], torch.tensor([len(w)]))
            assert int(out_lengths[i]) == int(n[0]) == alone.shape[1]
            assert torch.equal(logits[i, :alone.shape[1]], alone[0])


@pytest.mark.parametrize("mode", ["dynamic", "static-conv"])
def test_bfloat16_attention_is_recorded_and_close_to_float32(trained_tiny, calibration_set, structured_set, mode,
                                                              tmp_path):
    """asrc-quantize --attention-dtype bfloat16: the attention products (never int8) in bf16, on
    the fast int8 path and torch's modules alike; recorded in quantization.yaml, so the model loads
    as it was quantized; close to the float32-attention model, not equal to it."""
    import yaml

    from asrc.models import load
    from asrc.models.quantized import save_quantized
    from asrc.models.wav2vec2 import SelfAttention, plain_ops

    q32, _ = quantize_model(trained_tiny, mode, calibration_set)
    q16, spec = quantize_model(trained_tiny, mode, calibration_set, attention_dtype="bfloat16")
    assert spec.attention_dtype == "bfloat16"
    save_quantized(q16, spec, tmp_path / "q")
    assert yaml.safe_load((tmp_path / "q" / "quantization.yaml").read_text())["attention_dtype"] == "bfloat16"
    loaded = load(tmp_path / "q")
    assert {m.compute_dtype for m in loaded.modules() if isinstance(m, SelfAttention)} == {torch.bfloat16}
    wav = structured_set[2][None]
    with torch.inference_mode():
        for context in (contextlib.nullcontext, plain_ops):
            with context():
                a, _ = q32(wav)
                b, _ = loaded(wav)
                c, _ = q16(wav)
            assert torch.equal(b, c)
            assert not torch.equal(a, b)
            assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.999
            assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.97


def test_an_unknown_attention_dtype_is_refused(trained_tiny, tmp_path):
    from asrc.errors import AsrcError
    from asrc.models import load
    from asrc.models.quantized import save_quantized

    q, spec = quantize_model(trained_tiny, "dynamic")
    save_quantized(q, spec, tmp_path / "q")
    path = tmp_path / "q" / "quantization.yaml"
    path.write_text(path.read_text().replace("attention_dtype: float32", "attention_dtype: float16"))
    with pytest.raises(AsrcError, match=r"attention_dtype='float16' \(expected one of \['float32', 'bfloat16'\]\)"):
        load(tmp_path / "q")
    with pytest.raises(AsrcError, match="not one of"):
        quantize_model(trained_tiny, "dynamic", attention_dtype="float16")
