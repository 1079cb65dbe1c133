"""int8 convs give the int8 arithmetic's result on every x86 CPU.

Without VNNI (AVX2 only: many AMD EPYC and older Xeon machines) torch's quantized conv and
oneDNN's int8 matmul sum uint8 x int8 products in pairs into int16, which saturates once input
codes pass 127. asrc's int8 convs therefore stop 7-bit codes at 127 and, for 8-bit codes on
such a CPU, run the int8 conv in float (``Int8Conv1d._emulated``) and the CNN chain on float32
products of the codes (exact sums). Each test runs on this machine's CPU as it is and as if it
had no VNNI (the code paths a CPU without VNNI takes, checked on any CPU).
"""

import pytest
import torch
import torch.nn.functional as F

from asrc.models import int8_cnn
from asrc.models.int8 import Int8Conv1d
from asrc.models.int8_cnn import fused_available, int8_chain
from asrc.models.quantized import load_quantized, save_quantized
from asrc.models.wav2vec2 import plain_ops
from asrc.quant import quantize_model


@pytest.fixture(params=["this-cpu", "no-vnni"])
def cpu(request, monkeypatch):
    if request.param == "no-vnni":
        monkeypatch.setattr(int8_cnn, "cpu_has_vnni", lambda: False)
    return request.param


def _int8_reference(m: Int8Conv1d, x: torch.Tensor, requantize: bool = True) -> torch.Tensor:
    """What the int8 conv computes, in float64: input codes (clamped to the module's largest
    code) times the int8 kernel, summed exactly, then (``requantize``) rounded to the output's codes."""
    scale, zp = m.input_qparams()
    codes = torch.quantize_per_tensor(x, scale, zp, torch.quint8).int_repr().long().clamp(max=m.input_qmax)
    c = m.conv
    y = F.conv1d(((codes - zp) * scale).double(), c.weight().dequantize().double(), m.bias().double(), c.stride,
                 c.padding, c.dilation, c.groups)
    if not requantize:
        return y.float()
    return torch.quantize_per_tensor(y.float(), float(c.scale), int(c.zero_point), torch.quint8).dequantize()


def _saturating_conv(input_qmax: int):
    """A wav2vec2-like conv (256 -> 128 channels, kernel 3, stride 2) whose input codes fill the
    whole 8-bit range: the case where pairs of u8 x s8 products overflow int16 without VNNI."""
    gen = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv1d(256, 128, 3, stride=2)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.bias.copy_(torch.randn(128, generator=gen))
    codes = torch.randint(0, 256, (2, 256, 101), generator=gen)
    in_scale, in_zp = 0.01, 3
    x = (codes - in_zp) * in_scale
    ref = F.conv1d(x, conv.weight, conv.bias, 2).detach()
    lo, hi = float(ref.min()), float(ref.max())
    out_scale = (hi - lo) / 255
    m = Int8Conv1d.from_qparams(conv, (in_scale, in_zp), (out_scale, round(-lo / out_scale)), input_qmax=input_qmax)
    return m, x, out_scale


def _assert_int8_exact(m: Int8Conv1d, x: torch.Tensor, step: float) -> torch.Tensor:
    """Every output within one output step of the exact int8 arithmetic, nearly all equal (float32
    sums round differently at a few code boundaries); returns the reference."""
    with torch.inference_mode():
        out = m(x)
    ref = _int8_reference(m, x)
    diff = (out - ref).abs()
    assert float(diff.max()) <= step * 1.001
    assert float((diff > 1e-6).float().mean()) < 0.01
    return ref


def test_8bit_input_codes_are_exact(cpu):
    """8-bit codes over the whole range: the int8 arithmetic's result. torch's quantized conv
    itself fails this on a CPU without VNNI (saturated sums)."""
    _assert_int8_exact(*_saturating_conv(255))


def test_7bit_input_codes_clip_at_127(cpu):
    """7-bit activations: input values past the calibrated range clip at code 127 (as the fake
    quantization of calibration and QAT assumes), not at 255, so they cannot saturate either."""
    m, x, step = _saturating_conv(127)
    assert float((x / 0.01 + 3).max()) > 200  # many inputs past code 127
    ref = _assert_int8_exact(m, x, step)
    # the clipping matters: without it the reference differs
    m.input_qmax = 255
    assert not torch.allclose(_int8_reference(m, x), ref)


@pytest.mark.parametrize("bits", [7, 8])
def test_chain_form_and_codes_follow_the_cpu(cpu, bits, trained_tiny, calibration_set, structured_set, tmp_path):
    """The CNN chain is fused (oneDNN) only where that is exact: 7-bit codes, or a CPU with VNNI;
    otherwise the exact form (float32 products of the codes). Either way its features agree with the int8 modules'
    (which emulate 8-bit convs in float without VNNI), also after save and load."""
    qmodel, spec = quantize_model(trained_tiny, "static-conv", calibration_set, reduce_range=bits == 7)
    save_quantized(qmodel, spec, tmp_path / "q")
    loaded = load_quantized(tmp_path / "q")
    convs = [b.conv for b in loaded.feature_extractor.conv_layers[1:]]
    assert {c.input_qmax for c in convs} == {127 if bits == 7 else 255}
    chain = int8_chain(loaded.feature_extractor)
    assert chain.fused == (fused_available() and (bits == 7 or int8_cnn.cpu_has_vnni()))
    wav = torch.stack([structured_set[0][:12800], structured_set[1][:12800]])
    with torch.inference_mode():
        out, _ = loaded.feature_extractor(wav)
        with plain_ops():
            ref, _ = loaded.feature_extractor(wav)
    # the fused form skips the rounding of conv outputs to codes (test_int8_cnn.py): held loosely here
    assert torch.nn.functional.cosine_similarity(out.flatten(), ref.flatten(), dim=0) > 0.99
    if not chain.fused:
        last = convs[-1].output_qparams()[0]
        diff = (out - ref).abs()
        assert float((diff > 1e-5).float().mean()) < 0.01 and float(diff.max()) <= 4 * last + 1e-5


def test_positional_conv_with_8bit_codes_is_exact(cpu, trained_tiny, calibration_set):
    """static-pos with 8-bit codes over their whole range: the positional conv's oneDNN gemm runs
    only where it cannot saturate (VNNI), the module's float emulation elsewhere; its output is
    within one output step of the exact int8 arithmetic either way."""
    from asrc.models.int8 import FoldedPositionalConv, _pos_conv_gemm

    qmodel, _ = quantize_model(trained_tiny, "static-pos", calibration_set, reduce_range=False)
    folded = [m for m in qmodel.modules() if isinstance(m, FoldedPositionalConv)]
    assert len(folded) == 1 and folded[0].conv.input_qmax == 255
    pos, conv = folded[0], folded[0].conv
    assert (_pos_conv_gemm(conv) is not None) == (fused_available() and int8_cnn.cpu_has_vnni())
    scale, zp = conv.input_qparams()
    gen = torch.Generator().manual_seed(1)
    x = (torch.randint(0, 256, (1, 60, conv.conv.in_channels), generator=gen) - zp) * scale
    with torch.inference_mode():
        out = pos(x)
    # The gemm keeps the conv output in float (no rounding or clipping to the output codes, which
    # random codes over the whole range overflow); torch's conv and its emulation round and clip.
    gemm = _pos_conv_gemm(conv) is not None
    ref = _int8_reference(conv, x.transpose(1, 2), requantize=not gemm)
    if pos.kernel % 2 == 0:
        ref = ref[:, :, :-1]
    ref = F.gelu(ref).transpose(1, 2)
    step = conv.output_qparams()[0]
    assert float((out - ref).abs().max()) <= (1e-4 if gemm else 1.2 * step)


@pytest.mark.parametrize("input_qmax", [127, 255])
@pytest.mark.parametrize("per_group,kernel", [(12, 16), (24, 128), (48, 16), (64, 3)])
def test_grouped_long_kernel_convs_are_right_on_any_cpu(per_group, kernel, input_qmax):
    """torch's x86/oneDNN int8 kernel got grouped convs with < 32 channels per group and a long
    kernel (the positional conv of tiny and narrow models) hundreds of codes wrong on an Intel
    Xeon with AMX. Int8Conv1d checks the kernel once per geometry and computes such a conv in
    float where it is wrong: within one output code of the exact int8 arithmetic on every CPU."""
    from asrc.models.int8 import torch_conv_is_exact

    gen = torch.Generator().manual_seed(2)
    channels = 4 * per_group
    conv = torch.nn.Conv1d(channels, channels, kernel, padding=kernel // 2, groups=4)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        conv.bias.copy_(torch.randn(channels, generator=gen))
    x = (torch.randint(0, input_qmax + 1, (2, channels, 90), generator=gen) - 60) * 0.01
    ref_float = F.conv1d(x, conv.weight, conv.bias, padding=kernel // 2, groups=4).detach()
    lo, hi = float(ref_float.min()), float(ref_float.max())
    out_scale = (hi - lo) / 255
    m = Int8Conv1d.from_qparams(conv, (0.01, 60), (out_scale, round(-lo / out_scale)), input_qmax=input_qmax)
    with torch.inference_mode(), plain_ops():
        out = m(x)
    diff = (out - _int8_reference(m, x)).abs()
    assert float(diff.max()) <= out_scale * 1.001
    assert isinstance(torch_conv_is_exact(m.conv, input_qmax), bool)


def test_a_wrong_kernel_is_not_used(monkeypatch):
    """Where the check finds torch's kernel wrong, the module computes the conv in float: the
    exact int8 result (a stand-in for the wrong kernel: the check reporting 200 codes off)."""
    from asrc.models import int8

    monkeypatch.setattr(int8, "_CONV_CHECKS", {})
    monkeypatch.setattr(int8, "_conv_kernel_error", lambda *geometry: 200)
    m, x, step = _saturating_conv(127)
    monkeypatch.setattr(m.conv, "forward", lambda q: pytest.fail("the wrong kernel was used"))
    _assert_int8_exact(m, x, step)
    assert not int8.torch_conv_is_exact(m.conv, 127)
