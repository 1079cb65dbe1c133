"""asrc.models.int8.DynamicInt8Linear: torch's dynamic int8 Linear run as oneDNN's int8 matmul."""

import pytest
import torch

from asrc.models.int8 import DynamicInt8Linear
from asrc.models.int8_cnn import cpu_has_vnni, fused_available
from asrc.models.wav2vec2 import plain_ops
from asrc.quant import quantize_model

pytestmark = pytest.mark.skipif(not fused_available(), reason="this torch build has no oneDNN quantized linear")


def _rel_error(x, ref) -> float:
    return float((x - ref).norm() / ref.norm())


def test_dynamic_linear_fast_path(trained_tiny, calibration_set):
    """Close to torch's module (8-bit against 7-bit activations), and fc1 with its GELU inside
    the kernel equal to the GELU after it."""
    qmodel, _ = quantize_model(trained_tiny, "dynamic", calibration_set)
    layer = qmodel.encoder.layers[0]
    assert isinstance(layer.self_attn.q_proj, DynamicInt8Linear) and isinstance(layer.fc1, DynamicInt8Linear)
    x = torch.randn(1, 40, layer.fc1.in_features)
    with torch.inference_mode():
        fast = layer.self_attn.q_proj(x)
        fast_gelu = layer.fc1.forward_gelu(x)
        with plain_ops():
            reference = layer.self_attn.q_proj(x)
            gelu_reference = torch.nn.functional.gelu(layer.fc1(x))
        assert not torch.equal(fast, reference)  # another computation ...
        assert _rel_error(fast, reference) < 0.03  # ... of the same thing
        torch.testing.assert_close(fast_gelu, torch.nn.functional.gelu(layer.fc1(x)), atol=1e-4, rtol=1e-4)
        assert _rel_error(fast_gelu, gelu_reference) < 0.03


def test_transformer_layer_int8_path_equals_the_modules(trained_tiny, calibration_set, monkeypatch):
    """A layer whose linears are int8 runs them as one quantization of the attention input for
    q, k and v and the residual sums inside the kernels: the same numbers as the linears called
    one by one (each quantizing the same input alike), with and without padding."""
    from asrc.models.wav2vec2 import TransformerLayer

    qmodel, _ = quantize_model(trained_tiny, "dynamic", calibration_set)
    layer = qmodel.encoder.layers[0]
    d = layer.fc1.in_features
    x = torch.randn(2, 30, d)
    mask = torch.ones(2, 1, 1, 30, dtype=torch.bool)
    mask[1, ..., 22:] = False
    calls = []
    original = TransformerLayer._forward_int8
    monkeypatch.setattr(TransformerLayer, "_forward_int8", lambda self, *a: calls.append(1) or original(self, *a))
    with torch.inference_mode():
        for attn_mask in (None, mask):
            fused = layer(x, attn_mask)
            assert calls, "the int8 layer path did not run"
            calls.clear()
            with monkeypatch.context() as m:
                m.setattr(TransformerLayer, "_int8_path_ok", lambda self, x: False)
                one_by_one = layer(x, attn_mask)
            assert not calls
            torch.testing.assert_close(fused, one_by_one, atol=1e-5, rtol=1e-5)
        with plain_ops():
            layer(x)
        assert not calls  # plain ops: torch's modules
        seen = []
        hook = layer.fc1.register_forward_hook(lambda *a: seen.append(1))
        layer(x)
        hook.remove()
        assert seen and not calls  # a hooked linear: the modules run, the hook fires


def test_positional_conv_int8_path(trained_tiny, calibration_set):
    """The int8 positional conv as oneDNN int8 matmuls over strided windows of the codes: as
    close to the float conv as torch's quantized conv is (it skips the rounding of the conv output
    to 8 bits), same shape, padded frames included; odd and even kernels."""
    from asrc.models.int8 import FoldedPositionalConv, Int8Conv1d, _pos_conv_gemm

    torch.manual_seed(0)
    for kernel, dim, groups in ((128, 96, 16), (31, 64, 16), (4, 32, 4)):
        folded = FoldedPositionalConv(dim, kernel, groups).eval()
        x = torch.randn(2, 57, dim)
        x[1, 40:] = 0.0  # a padded utterance
        with torch.inference_mode():
            reference = folded(x)
            y = folded.conv(x.transpose(1, 2))

            def qparams(t, qmax=255):
                scale = float(t.max() - t.min()) / qmax
                return scale, int(round(-float(t.min()) / scale))

            # input codes the gemm runs exactly here: 8-bit with VNNI, else 7-bit
            qmax = 255 if cpu_has_vnni() else 127
            folded.conv = Int8Conv1d.from_qparams(folded.conv, qparams(x, qmax), qparams(y), input_qmax=qmax)
            assert _pos_conv_gemm(folded.conv) is not None
            fast = folded(x)
            with plain_ops():
                module = folded(x)
        assert fast.shape == module.shape == reference.shape
        assert _rel_error(fast, reference) <= 1.05 * _rel_error(module, reference)
        assert _rel_error(fast, module) < 0.05
        hook = folded.conv.register_forward_hook(lambda *a: None)
        assert _pos_conv_gemm(folded.conv) is None  # watched (calibration): the module runs
        hook.remove()
