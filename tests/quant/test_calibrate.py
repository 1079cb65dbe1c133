"""Post-training options of the static int8 convs: range methods, weight granularity, bias
correction, each checked on its own and against the float convs directly."""

import pytest
import torch
import yaml

from asrc.errors import ConfigError
from asrc.models import save_model_dir
from asrc.models.int8 import Int8Conv1d, affine_qparams
from asrc.quant import quantize_model
from asrc.quant.calibrate import CALIBRATION_METHODS, ConvQuantOptions, RangeObserver, mse_range
from quant_helpers import write_wav_dir


def quant_error(values, scale, zp):
    return float(((torch.fake_quantize_per_tensor_affine(values, scale, zp, 0, 255) - values) ** 2).mean())


@pytest.fixture(scope="module")
def heavy_tailed():
    """GELU-like activations with a few large outliers, as the CNN's are."""
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.gelu(torch.randn(8, 64, 500, generator=gen))
    x.view(-1)[torch.randint(x.numel(), (20,), generator=gen)] = 40.0
    return x


def test_range_methods(heavy_tailed):
    obs = {m: RangeObserver(m, 255, percentile=99.9) for m in CALIBRATION_METHODS}
    for o in obs.values():
        o(heavy_tailed)
    q = {m: o.qparams() for m, o in obs.items()}
    lo, hi = float(heavy_tailed.min()), float(heavy_tailed.max())
    assert q["minmax"] == affine_qparams(lo, hi, 255)
    # Percentile and MSE clip the outliers: a finer step, a smaller error over all values.
    assert q["percentile"][0] < q["minmax"][0] / 5
    assert obs["percentile"].range()[1] < 5.0
    errors = {m: quant_error(heavy_tailed, *qp) for m, qp in q.items()}
    assert errors["mse"] <= errors["minmax"] and errors["mse"] <= errors["percentile"] * 1.01
    assert errors["histogram"] < errors["minmax"]


def test_mse_range_is_minmax_without_outliers():
    x = torch.linspace(-1.0, 1.0, 10001)
    lo, hi = mse_range(x, -1.0, 1.0, 255)
    assert lo == pytest.approx(-1.0) and hi == pytest.approx(1.0)


def test_options_are_checked():
    with pytest.raises(ConfigError, match="calibration='kl'"):
        ConvQuantOptions(calibration="kl")
    with pytest.raises(ConfigError, match="weights='per-row'"):
        ConvQuantOptions(weights="per-row")
    with pytest.raises(ConfigError, match="percentile=40"):
        ConvQuantOptions(calibration="percentile", percentile=40)


def conv_io(model, qmodel, names, waveforms):
    """For each int8 conv: (its float conv's output, its own output) on the same inputs, the
    inputs the quantized model gives it."""
    inputs = {n: [] for n in names}
    hooks = [qmodel.get_submodule(n).register_forward_pre_hook(lambda _m, a, n=n: inputs[n].append(a[0]))
             for n in names]
    with torch.inference_mode():
        for w in waveforms:
            qmodel(w[None])
    for h in hooks:
        h.remove()
    with torch.inference_mode():
        return {n: [(model.get_submodule(n)(x), qmodel.get_submodule(n)(x)) for x in inputs[n]] for n in names}


@pytest.mark.parametrize("options", [
    ConvQuantOptions(),
    ConvQuantOptions(weights="per-tensor"),
    ConvQuantOptions(calibration="minmax"),
    ConvQuantOptions(calibration="percentile", percentile=99.99),
    ConvQuantOptions(calibration="mse"),
    ConvQuantOptions(bias_correction=True),
], ids=["default", "per-tensor", "minmax", "percentile", "mse", "bias-correction"])
def test_int8_convs_follow_the_float_convs(trained_tiny, calibration_set, structured_set, options):
    qmodel, spec = quantize_model(trained_tiny, "static-conv", calibration_set, options=options)
    assert spec.calibration["method"] == options.calibration
    assert spec.calibration["conv_weights"] == options.weights
    assert spec.calibration["bias_correction"] == options.bias_correction
    cnn = [n for n in spec.static_int8_conv if n.startswith("feature_extractor")]
    assert len(cnn) == 6
    for name, pairs in conv_io(trained_tiny, qmodel, cnn, structured_set).items():
        conv = qmodel.get_submodule(name)
        assert isinstance(conv, Int8Conv1d)
        per_channel = conv.conv.weight().qscheme() == torch.per_channel_affine
        assert per_channel == options.per_channel
        # 7-bit activations (a CPU without VNNI quantizes for them) round twice as coarsely
        limit = 0.2 if spec.activation_reduce_range else 0.1
        for ref, got in pairs:
            rel = float((got - ref).norm() / ref.norm())
            assert rel < limit, (name, rel)


def test_per_channel_weights_are_closer_than_per_tensor(trained_tiny, calibration_set):
    """On the kernels alone: one scale per output channel rounds no kernel coarser."""
    errors = {}
    for weights in ("per-channel", "per-tensor"):
        qmodel, _ = quantize_model(trained_tiny, "static-conv", calibration_set,
                                   options=ConvQuantOptions(weights=weights))
        errors[weights] = sum(float((qmodel.get_submodule(f"feature_extractor.conv_layers.{i}.conv").weight().detach()
                                     - trained_tiny.feature_extractor.conv_layers[i].conv.weight).norm())
                              for i in range(1, 7))
    assert errors["per-channel"] < errors["per-tensor"]


def test_bias_correction_restores_channel_means(trained_tiny, calibration_set):
    from asrc.quant.calibrate import channel_means

    names = [f"feature_extractor.conv_layers.{i}.conv" for i in range(1, 7)]
    ref = channel_means(trained_tiny, names, calibration_set)
    shift = {}
    for bc in (False, True):
        qmodel, spec = quantize_model(trained_tiny, "static-conv", calibration_set,
                                      options=ConvQuantOptions(bias_correction=bc))
        got = channel_means(qmodel, names, calibration_set, of_int8_accumulator=True)
        shift[bc] = sum(float((got[n] - ref[n]).abs().mean()) for n in names)
        if bc:
            assert qmodel.feature_extractor.conv_layers[1].conv.bias() is not None  # conv_bias false: one added
            assert spec.calibration["bias_shift_max"] > 0
    assert shift[True] < 0.5 * shift[False]


def _biases(qmodel, names):
    return {n: (None if qmodel.get_submodule(n).bias() is None else qmodel.get_submodule(n).bias().detach().clone())
            for n in names}


def test_bias_correction_of_some_convs(trained_tiny, calibration_set):
    """--bias-correction pos-conv / cnn move those convs' biases and leave the others as quantized."""
    plain, spec = quantize_model(trained_tiny, "static-conv", calibration_set)
    names = spec.static_int8_conv
    pos = [n for n in names if n.startswith("encoder.pos_conv.")]
    cnn = [n for n in names if n.startswith("feature_extractor.")]
    assert len(pos) == 1 and len(cnn) == 6
    before = _biases(plain, names)
    for which, moved in (("pos-conv", pos), ("cnn", cnn), ("all", names)):
        qmodel, spec = quantize_model(trained_tiny, "static-conv", calibration_set,
                                      options=ConvQuantOptions(bias_correction=which))
        assert spec.calibration["bias_correction"] == which
        after = _biases(qmodel, names)
        for n in names:
            unchanged = after[n] is None if before[n] is None else (
                after[n] is not None and torch.equal(after[n], before[n]))
            assert unchanged == (n not in moved), (which, n)


def test_bias_correction_choices_are_checked(trained_tiny, calibration_set):
    assert ConvQuantOptions(bias_correction=True).bias_correction == "all"
    assert ConvQuantOptions(bias_correction=False).bias_correction == "none"
    with pytest.raises(ConfigError, match="bias correction='pos'"):
        ConvQuantOptions(bias_correction="pos")
    # static-pos has no int8 CNN conv: a correction of the CNN would do nothing, silently
    with pytest.raises(ConfigError, match="bias correction of 'cnn': mode 'static-pos' has no such int8 conv"):
        quantize_model(trained_tiny, "static-pos", calibration_set, options=ConvQuantOptions(bias_correction="cnn"))


def test_options_survive_saving_and_the_cli(trained_tiny, calibration_set, tmp_path, capsys):
    from asrc.bin.quantize import main
    from asrc.models import load

    save_model_dir(trained_tiny, tmp_path / "float", ["<blank>", "A", "B", "C", "|"])
    calib = tmp_path / "calib"
    write_wav_dir(calib, calibration_set)
    assert main([str(tmp_path / "float"), str(tmp_path / "q"), "--mode", "static-conv", "--calib", str(calib),
                 "--conv-calibration", "percentile", "--percentile", "99.9", "--bias-correction"]) == 0
    spec = yaml.safe_load((tmp_path / "q" / "quantization.yaml").read_text())
    assert spec["calibration"]["method"] == "percentile" and spec["calibration"]["percentile"] == 99.9
    assert spec["calibration"]["bias_correction"] == "all"
    reloaded = load(tmp_path / "q")
    assert reloaded.feature_extractor.conv_layers[1].conv.bias() is not None
    assert main([str(tmp_path / "float"), str(tmp_path / "r"), "--mode", "static-conv", "--calib", str(calib),
                 "--conv-calibration", "percentile", "--percentile", "20"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("asrc-quantize: error:") and "percentile=20" in err[-1]
    # --bias-correction WHICH, recorded as chosen; a WHICH the mode has no conv for is one line
    assert main([str(tmp_path / "float"), str(tmp_path / "p"), "--mode", "static-conv", "--calib", str(calib),
                 "--bias-correction", "pos-conv"]) == 0
    assert yaml.safe_load((tmp_path / "p" / "quantization.yaml").read_text())["calibration"]["bias_correction"] \
        == "pos-conv"
    assert main([str(tmp_path / "float"), str(tmp_path / "c"), "--mode", "static-pos", "--calib", str(calib),
                 "--bias-correction", "cnn"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("asrc-quantize: error:") and "'cnn': mode 'static-pos' has no such" in err[-1]
    assert not (tmp_path / "c").exists()
