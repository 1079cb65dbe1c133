"""asrc.models.int8.DynamicInt8Linear: torch's dynamic int8 Linear run as oneDNN's int8 matmul."""

import pytest
import torch

from asrc.models.int8 import DynamicInt8Linear
from asrc.models.int8_cnn import fused_available
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
