import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from asrc.models import Wav2Vec2Config, build_model, num_parameters
from asrc.models.footprint import MB, footprint, macs, size_bytes
from asrc.models.wav2vec2 import plain_ops

# Conv front end with total stride 40 and receptive field 100 samples.
TINY = dict(conv_layers=[[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 2, 2]], embed_dim=48, ffn_dim=96,
            num_heads=4, num_layers=3, pos_conv_kernel=16, pos_conv_groups=4, vocab_size=10)


def tiny(**kw):
    return Wav2Vec2Config(**{**TINY, **kw})


def test_blocks_sum_to_num_parameters_and_config_equals_model():
    for cfg in (tiny(), tiny(conv_groups=2, conv_share=True, layer_reuse=2),
                tiny(extractor_mode="layer_norm", conv_bias=True, layer_norm_first=True)):
        model = build_model(cfg)
        fp = footprint(model)
        assert fp.total.params == num_parameters(model)
        assert footprint(cfg).to_dict() == fp.to_dict()  # config alone: meta-device model, same numbers
        assert fp.total.fp32_bytes == size_bytes(model, "fp32") == 4 * num_parameters(model)
        assert fp.total.int8_bytes == size_bytes(model, "int8")
        assert fp.total.int8_static_conv_bytes == size_bytes(model, "int8-static-conv")
        assert fp.total.int8_static_pos_bytes == size_bytes(model, "int8-static-pos")


def test_parameter_counts_by_block_by_hand():
    cfg = tiny()
    fp = footprint(cfg)
    c, d, f, v = 32, 48, 96, 10
    # conv kernels (no bias) + the per-channel group norm of conv layer 0.
    assert fp.block("feature_extractor").params == c * 10 + c * c * 3 * 2 + c * c * 2 + 2 * c
    assert fp.block("feature_projection").params == 2 * c + c * d + d
    assert fp.block("pos_conv").params == d * (d // 4) * 16 + 16 + d
    per_layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d
    assert fp.block("transformer").params == 3 * per_layer + 2 * d
    assert fp.block("ctc_head").params == d * v + v
    assert fp.block("mask_emb").params == d
    # int8: Linear weights 1 byte, everything else 4, the pos-conv gain (16 values) folded away.
    linear_weights = c * d + 3 * (4 * d * d + 2 * d * f) + d * v
    assert fp.total.int8_bytes == linear_weights + 4 * (fp.total.params - linear_weights - 16)
    # int8-static-conv: CNN kernels 2..4 and the pos-conv kernel too.
    convs = c * c * 3 * 2 + c * c * 2 + d * (d // 4) * 16
    assert fp.total.int8_static_conv_bytes == fp.total.int8_bytes - 3 * convs
    assert fp.block("pos_conv").int8_static_conv_bytes == d * (d // 4) * 16 + 4 * d
    # int8-static-pos: the pos-conv kernel only
    assert fp.total.int8_static_pos_bytes == fp.total.int8_bytes - 3 * d * (d // 4) * 16
    assert fp.block("pos_conv").int8_static_pos_bytes == fp.block("pos_conv").int8_static_conv_bytes


def test_grouped_and_shared_convs_change_counts_by_exactly_the_removed_weights():
    base = footprint(tiny())
    c = 32
    grouped = footprint(tiny(conv_groups=2))
    removed = sum(c * c * k // 2 for k in (3, 3, 2))  # layers 1..3 lose their off-diagonal halves
    assert base.total.params - grouped.total.params == removed
    assert base.block("feature_extractor").params - grouped.block("feature_extractor").params == removed
    assert base.total.int8_bytes - grouped.total.int8_bytes == 4 * removed  # convs stay fp32
    assert base.total.int8_static_conv_bytes - grouped.total.int8_static_conv_bytes == removed
    # MACs of the grouped layers halve, frames being equal.
    frames = [3199, 1599, 799, 399]
    conv_macs = [f * c * cin * k for f, cin, k in zip(frames, (1, c, c, c), (10, 3, 3, 2))]
    assert base.block("feature_extractor").macs == sum(conv_macs)
    assert grouped.block("feature_extractor").macs == conv_macs[0] + sum(m // 2 for m in conv_macs[1:])
    shared = footprint(tiny(conv_share=True))
    assert base.total.params - shared.total.params == c * c * 3  # the two k=3 layers share one kernel
    assert shared.block("feature_extractor").macs == base.block("feature_extractor").macs
    reused = footprint(tiny(num_layers=1, layer_reuse=3))
    three = footprint(tiny(num_layers=3))
    assert reused.block("transformer").macs == three.block("transformer").macs
    per_layer = 4 * 48 * 48 + (48 * 96 + 96) + (96 * 48 + 48) + 4 * 48 + 4 * 48
    assert three.total.params - reused.total.params == 2 * per_layer


def test_macs_by_hand_formula():
    cfg = tiny()
    m = macs(cfg, 16000)
    t, d, f = 399, 48, 96
    assert m["feature_projection"] == t * 32 * d
    assert m["pos_conv"] == (t + 1) * d * (d // 4) * 16  # even kernel: one extra frame computed
    assert m["transformer"] == 3 * (4 * t * d * d + 2 * t * t * d + 2 * t * d * f)
    assert m["ctc_head"] == t * d * 10
    fp = footprint(cfg, seconds=2.0)
    assert fp.samples == 32000 and fp.frames == 799
    assert fp.macs_per_second("ctc_head") == 799 * d * 10 / 2.0
    with pytest.raises(ValueError, match="receptive field"):
        footprint(cfg, seconds=0.001)


@pytest.mark.parametrize("kw", [{}, dict(conv_groups=2, layer_reuse=2), dict(conv_groups=4, conv_share=True)])
def test_macs_equal_half_the_flops_torch_counts(kw):
    cfg = tiny(**kw)
    model = build_model(cfg).eval()
    # The math backend runs attention as matmuls torch's counter sees; fused CPU kernels (the
    # attention kernel, oneDNN's linear of the inference fast path) it skips.
    with torch.no_grad(), plain_ops(), sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 12345))
    counts = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    fp = footprint(cfg, seconds=12345 / 16000)
    prefix = "Wav2Vec2CTC."
    for block, module in [("feature_extractor", "feature_extractor"), ("feature_projection", "feature_projection"),
                          ("pos_conv", "encoder.pos_conv"), ("ctc_head", "ctc_head")]:
        assert counts[prefix + module] == 2 * fp.block(block).macs, block
    layers = sum(counts[f"{prefix}encoder.layers.{i}"] for i in range(cfg.num_layers))
    assert layers == 2 * fp.block("transformer").macs
    assert counts["Global"] == 2 * fp.total.macs


def test_published_wav2vec2_large_sizes():
    # Shrinking Bigfoot (Peng et al. 2021): wav2vec2-large 1262 MB, dynamic int8 354 MB.
    large = Wav2Vec2Config(embed_dim=1024, ffn_dim=4096, num_heads=16, num_layers=24, layer_norm_first=True,
                           extractor_mode="layer_norm", conv_bias=True)
    fp = footprint(large)
    assert fp.total.params == 315_471_520
    assert round(fp.total.fp32_bytes / MB) == 1262
    assert round(fp.total.int8_bytes / MB) == 354


def test_format_table_and_dict():
    fp = footprint(tiny(), seconds=1.5)
    md = fp.format_table()
    lines = md.splitlines()
    assert lines[0].startswith("| block") and lines[1].startswith("|:---")
    assert len({len(line) for line in lines[:9]}) == 1  # aligned
    assert "| total" in md and "1.5 s" in md
    text = fp.format_table(markdown=False)
    assert "|" not in text and "total" in text
    d = fp.to_dict()
    assert [b["name"] for b in d["blocks"]] == ["feature_extractor", "feature_projection", "pos_conv",
                                                "transformer", "ctc_head", "mask_emb"]
    assert d["total"]["macs_per_second"] == pytest.approx(fp.total.macs / 1.5)
    with pytest.raises(ValueError, match="dtype"):
        size_bytes(build_model(tiny()), "int4")
