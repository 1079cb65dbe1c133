"""The int8 CNN chain (asrc.models.int8_cnn) against the module-by-module int8 model it stands in for."""

import dataclasses

import pytest
import torch

from asrc.models import build_model
from asrc.models import int8_cnn
from asrc.models.int8_cnn import Int8ConvChain, cpu_has_vnni, fused_available, int8_chain
from asrc.models.wav2vec2 import plain_ops
from asrc.quant import quantize_model
from quant_helpers import TINY, TOKENS, structured_utterance


# The activation width at which the fused chain runs here (8 bits with VNNI, else 7: 8-bit codes
# take the exact form on such a CPU, tests/quant/test_int8_saturation.py), so that both forms run.
SEVEN_BIT = not cpu_has_vnni()


def _features(extractor, wav, lengths=None, fast=True):
    with torch.inference_mode():
        if fast:
            return extractor(wav, lengths)
        with plain_ops():
            return extractor(wav, lengths)


def _last_scale(qmodel) -> float:
    return qmodel.feature_extractor.conv_layers[-1].conv.output_qparams()[0]


@pytest.fixture(params=["fused", "exact"], autouse=True)
def chain_kind(request, monkeypatch):
    """Every test runs both forms of the chain: oneDNN's fused int8 matmul (where this torch has
    it) and the exact one (float32 products of the int8 codes + the module path's rounding)."""
    fused = request.param == "fused"
    if fused and not fused_available():
        pytest.skip("this torch build has no oneDNN quantized linear (torch.ops.onednn.qlinear_pointwise)")
    monkeypatch.setattr(int8_cnn, "fused_available", lambda: fused)
    return request.param


def _rel_error(x, ref) -> float:
    return float((x - ref).norm() / ref.norm())


def _assert_chain_matches(qmodel, wav, lengths=None, float_model=None):
    """Exact chain: its features equal the module path's up to a code flipped at a rounding
    boundary (almost every value within 1e-5, none off by more than a few output steps of the
    last layer). Fused chain: it does not round each conv's output to its uint8 codes before the
    GELU (the module path must), so it is held to being as close to the float model as the
    module path is (and pointing the same way as the module path)."""
    extractor = qmodel.feature_extractor
    chain = int8_chain(extractor)
    assert chain is not None and chain.fused == int8_cnn.fused_available()
    ref, ref_lengths = _features(extractor, wav, lengths, fast=False)
    out, out_lengths = _features(extractor, wav, lengths, fast=True)
    assert out.shape == ref.shape
    assert (out_lengths is None) == (ref_lengths is None)
    if lengths is not None:
        assert torch.equal(out_lengths, ref_lengths)
    if chain.fused:
        assert torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.99
        if float_model is not None:
            exact, _ = _features(float_model.feature_extractor, wav, lengths)
            assert _rel_error(out, exact) <= 1.1 * _rel_error(ref, exact) + 1e-3
        return ref, out
    diff = (out - ref).abs()
    assert float((diff > 1e-5).float().mean()) < 0.01
    assert float(diff.max()) <= 4 * _last_scale(qmodel) + 1e-5
    return ref, out


@pytest.fixture(scope="module")
def static_conv(trained_tiny, calibration_set):
    qmodel, _ = quantize_model(trained_tiny, "static-conv", calibration_set, reduce_range=SEVEN_BIT)
    return qmodel


def test_chain_matches_the_int8_modules(static_conv, trained_tiny, structured_set):
    wav = torch.stack([structured_set[0][:12800], structured_set[1][:12800]])
    ref, _ = _assert_chain_matches(static_conv, wav, float_model=trained_tiny)
    assert len(torch.unique(ref)) > 50  # activations that exercise many codes, not a few


def test_chain_matches_with_a_dc_offset(static_conv, trained_tiny, structured_set):
    """A recording with a large DC offset (a cheap sound card): the chain computes the first
    layer on windows less the utterance's mean and folds the offset back; its folded norm still
    matches the module path's."""
    wav = structured_set[2][:12800][None] + 0.4
    _assert_chain_matches(static_conv, wav, float_model=trained_tiny)


def test_chain_without_a_first_norm_with_a_dc_offset(calibration_set, structured_set):
    """No norm on the first layer (the offset is not normalised away): the chain's centring of
    the windows is undone through the bias exactly."""
    torch.manual_seed(4)
    model = build_model(dataclasses.replace(TINY, conv_bias=True), TOKENS).eval()
    model.feature_extractor.conv_layers[0].norm = None
    with torch.no_grad():
        model.feature_extractor.conv_layers[0].conv.bias.normal_(0.0, 0.2)
    qmodel, _ = quantize_model(model, "static-conv", [w + 0.3 for w in calibration_set], reduce_range=SEVEN_BIT)
    assert int8_chain(qmodel.feature_extractor) is not None
    _assert_chain_matches(qmodel, structured_set[2][:12800][None] + 0.3, float_model=model)


def test_chain_with_padding_matches(static_conv, trained_tiny, structured_set):
    """Utterances of different lengths in one batch: the first layer's norm takes each one's valid
    frames only, in the chain (folded statistics) as in the reference (masked norm)."""
    a, b = structured_set[1], structured_set[3]
    wav = torch.zeros(2, len(b))
    wav[0, :len(a)], wav[1] = a, b
    lengths = torch.tensor([len(a), len(b)])
    ref, out = _assert_chain_matches(static_conv, wav, lengths, float_model=trained_tiny)
    frames = static_conv.feature_extractor.output_lengths(lengths)
    single, _ = _features(static_conv.feature_extractor, a[None], fast=True)
    # the padded utterance's valid frames are what it gives alone
    assert torch.allclose(out[0, :, :frames[0]], single[0], atol=1e-5)


def test_model_outputs_and_greedy_tokens_agree(static_conv, trained_tiny, structured_set, chain_kind):
    """The whole int8 model on the fast path against torch's int8 modules: the same frame
    decisions (exact chain) or nearly all (fused chain, 8-bit dynamic Linear layers), and logits
    as close to the float model's as the modules' are."""
    frames = agree = 0
    err_fast = err_modules = norm = 0.0
    for wav in structured_set:
        with torch.inference_mode():
            exact, _ = trained_tiny(wav[None])
            with plain_ops():
                ref, _ = static_conv(wav[None])
            out, _ = static_conv(wav[None])
        frames += ref.shape[1]
        agree += int((out.argmax(-1) == ref.argmax(-1)).sum())
        assert float((out - ref).abs().max()) < 0.2 * float(ref.abs().max())
        err_fast += float((out - exact).pow(2).sum())
        err_modules += float((ref - exact).pow(2).sum())
        norm += float(exact.pow(2).sum())
    assert agree == frames if chain_kind == "exact" else agree >= 0.97 * frames
    assert (err_fast / norm) ** 0.5 <= 1.1 * (err_modules / norm) ** 0.5 + 1e-3


def test_ungrouped_cnn_with_bias(calibration_set):
    """conv_groups 1 and conv biases (the chain folds zero point and bias into one offset)."""
    torch.manual_seed(3)
    config = dataclasses.replace(TINY, conv_groups=1, conv_bias=True)
    model = build_model(config, TOKENS).eval()
    with torch.no_grad():
        for block in model.feature_extractor.conv_layers:
            block.conv.weight.mul_(6.0)
            block.conv.bias.normal_(0.0, 0.2)
    qmodel, _ = quantize_model(model, "static-conv", calibration_set, reduce_range=SEVEN_BIT)
    wav = structured_utterance(12, torch.Generator().manual_seed(5))[0][None]
    ref, _ = _assert_chain_matches(qmodel, wav, float_model=model)
    # not collapsed to a few codes (7-bit activations, CPUs without VNNI: 50 levels here)
    assert len(torch.unique(ref)) > 40


def test_chain_follows_weight_changes(trained_tiny, calibration_set, structured_set):
    """A bias corrected after the chain was built (what bias correction does) rebuilds it."""
    qmodel, _ = quantize_model(trained_tiny, "static-conv", calibration_set, reduce_range=SEVEN_BIT)
    extractor = qmodel.feature_extractor
    wav = structured_set[2][None]
    before, _ = _features(extractor, wav)
    first = int8_chain(extractor)
    conv = extractor.conv_layers[-1].conv
    bias = conv.bias()
    conv.set_bias((torch.zeros(conv.conv.out_channels) if bias is None else bias) + 0.5)
    assert int8_chain(extractor) is not first
    after = _assert_chain_matches(qmodel, wav)[1]
    assert not torch.allclose(before, after)


def test_other_structures_take_the_module_path(trained_tiny, calibration_set):
    """static-pos keeps the CNN in float, and a layer-norm front end has norms in layers 2..N:
    no chain for either (the modules run as they are)."""
    qmodel, _ = quantize_model(trained_tiny, "static-pos", calibration_set, reduce_range=SEVEN_BIT)
    assert int8_chain(qmodel.feature_extractor) is None
    assert int8_chain(trained_tiny.feature_extractor) is None
    config = dataclasses.replace(TINY, extractor_mode="layer_norm")
    model = build_model(config, TOKENS).eval()
    qmodel, _ = quantize_model(model, "static-conv", calibration_set, reduce_range=SEVEN_BIT)
    assert not Int8ConvChain.supported(qmodel.feature_extractor)
    wav = calibration_set[0][None]
    with torch.inference_mode():
        out, _ = qmodel(wav)
    assert torch.isfinite(out).all()

