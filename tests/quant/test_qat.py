import copy

import pytest
import torch
import torch.nn.functional as F

from asrc.errors import AsrcError, ConfigError
from asrc.models import load
from asrc.models.ctc import greedy_ids
from asrc.models.int8 import Int8Conv1d
from asrc.models.quantized import save_quantized
from asrc.models.wav2vec2 import plain_ops
from asrc.quant.export import check_export, export_model
from asrc.quant.qat import (QATConfig, QATConv1d, QATLinear, QATPositionalConv, convert_qat, float_state,
                            prepare_qat, set_fake_quant)

from quant_helpers import TOKENS, frame_targets, structured_utterance, train_tones


def qat_tune(model, steps=12, seed=1, config=None):
    """A few fake-quantized training steps of a copy of ``model`` (ranges observed, weights moved)."""
    model = prepare_qat(copy.deepcopy(model), config or QATConfig())
    set_fake_quant(model, True)
    train_tones(model, steps, torch.Generator().manual_seed(seed), lr=1e-3)
    return model.eval()


@pytest.fixture(scope="module")
def qat_model(trained_tiny):
    return qat_tune(trained_tiny)


def test_config_rejects_unknown_keys_and_bad_values():
    assert QATConfig.from_dict({"start_updates": 5}).start_updates == 5
    with pytest.raises(ConfigError, match=r"unknown keys \['start_update'\]"):
        QATConfig.from_dict({"start_update": 5})
    with pytest.raises(ConfigError, match="qat.activation_bits=6 must be 7 or 8"):
        QATConfig.from_dict({"activation_bits": 6})
    with pytest.raises(ConfigError, match="expected a mapping"):
        QATConfig.from_dict([1])


def test_activation_range_percentile_clips_outliers_minmax_does_not():
    from asrc.quant.qat import ActivationRange

    x = torch.nn.functional.gelu(torch.randn(4, 32, 1000, generator=torch.Generator().manual_seed(0)))
    x[0, 0, :5] = 50.0
    ranges = {}
    for p in (100, 99.9):
        r = ActivationRange(255, momentum=0.5, percentile=p)
        r.observe(x)
        r.observe(x * 0.5)  # moving average: halfway between the two batches' ranges
        ranges[p] = r.range.tolist()
    assert ranges[100] == pytest.approx([0.75 * float(x.min()), 37.5], rel=1e-5)
    assert 1.0 < ranges[99.9][1] < 5.0
    with pytest.raises(ConfigError, match="qat.range_percentile=30 must be a number in"):
        QATConfig.from_dict({"range_percentile": 30})


def test_prepare_keeps_parameters_names_and_ties(trained_tiny):
    model = copy.deepcopy(trained_tiny)
    params = dict(model.named_parameters())
    prepare_qat(model, QATConfig())
    assert dict(model.named_parameters()).keys() == params.keys()
    assert all(p is params[n] for n, p in model.named_parameters())  # same objects: optimizer state stays valid
    kinds = {n: type(m) for n, m in model.named_modules()}
    assert kinds["feature_extractor.conv_layers.1.conv"] is QATConv1d
    assert kinds["feature_extractor.conv_layers.0.conv"] is torch.nn.Conv1d  # the raw-waveform layer stays float
    assert kinds["encoder.pos_conv"] is QATPositionalConv and kinds["ctc_head"] is QATLinear
    # Off until switched on: the float function exactly (on plain ops: the fast path is for nn.Linear only).
    wav = structured_utterance(8, torch.Generator().manual_seed(3))[0][None]
    with torch.inference_mode(), plain_ops():
        torch.testing.assert_close(model(wav)[0], trained_tiny(wav)[0], rtol=0, atol=0)


def test_fake_quant_changes_output_and_gradients_flow(trained_tiny):
    model = prepare_qat(copy.deepcopy(trained_tiny), QATConfig())
    set_fake_quant(model, True)
    model.train()
    wav = structured_utterance(8, torch.Generator().manual_seed(3))[0][None]
    logits, _ = model(wav)
    logits.square().mean().backward()
    conv = model.feature_extractor.conv_layers[1].conv
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    assert conv.input_range.observed and conv.output_range.observed
    lo, hi = conv.input_range.range.tolist()
    assert lo <= 0 < hi


def test_int8_conv_equals_fake_quant_conv_directly(qat_model):
    """Each converted int8 conv against its fake-quantized twin on the inputs the model gives it."""
    qmodel, spec = convert_qat(qat_model)
    inputs = {}
    hooks = [qat_model.get_submodule(n.removesuffix(".conv") if n.startswith("encoder.pos_conv") else n)
             .register_forward_pre_hook(lambda _m, args, n=n: inputs.setdefault(n, args[0]))
             for n in spec.static_int8_conv]
    wav = structured_utterance(15, torch.Generator().manual_seed(5))[0][None]
    with torch.inference_mode():
        qat_model(wav)
    for h in hooks:
        h.remove()
    assert len(inputs) == len(spec.static_int8_conv) == len(qat_model.config.conv_layers)
    with torch.inference_mode():
        for name, x in inputs.items():
            if name.startswith("encoder.pos_conv"):
                fake, int8 = qat_model.encoder.pos_conv, qmodel.encoder.pos_conv
            else:
                fake, int8 = qat_model.get_submodule(name), qmodel.get_submodule(name)
                assert isinstance(int8, Int8Conv1d)
            with plain_ops():  # torch's int8 modules, what the fake quantization simulates
                got = int8(x)
            ref = fake(x)
            step = fake.output_range.qparams()[0] if hasattr(fake, "output_range") else None
            # int32 accumulation vs float: an output may round to the neighbouring code, no further.
            assert (got - ref).abs().max() <= 1.01 * step, name
            assert ((got - ref).abs() > 1e-6).float().mean() < 0.02, name


def test_converted_model_agrees_with_fake_quant(qat_model, structured_set):
    qmodel, spec = convert_qat(qat_model)
    assert spec.mode == "qat" and len(spec.dynamic_int8_linear) == len(
        [m for m in qat_model.modules() if isinstance(m, QATLinear)])
    with torch.inference_mode():
        for wav in structured_set:
            ref, _ = qat_model(wav[None])
            with plain_ops():  # torch's int8 modules: what the fake quantization simulates
                got, _ = qmodel(wav[None])
            assert F.cosine_similarity(ref.flatten(), got.flatten(), dim=0) > 0.999
            assert (ref - got).abs().max() < 0.1 * ref.abs().max()
            assert greedy_ids(ref) == greedy_ids(got)
            # the CPU fast path (oneDNN: no rounding of conv outputs before the GELU, 8-bit
            # dynamic activations) decodes the same
            fast, _ = qmodel(wav[None])
            assert F.cosine_similarity(ref.flatten(), fast.flatten(), dim=0) > 0.995
            assert greedy_ids(ref) == greedy_ids(fast)


def test_converted_model_saves_loads_decodes_and_exports(qat_model, structured_set, tmp_path):
    qmodel, spec = convert_qat(qat_model)
    save_quantized(qmodel, spec, tmp_path / "int8", TOKENS)
    reloaded = load(tmp_path / "int8")
    assert reloaded.quantization.mode == "qat"
    with torch.inference_mode():
        for wav in structured_set:
            torch.testing.assert_close(reloaded(wav[None])[0], qmodel(wav[None])[0])
    assert reloaded.tokens == TOKENS
    with torch.inference_mode():
        ids = greedy_ids(reloaded(structured_set[0][None])[0])[0]
    assert ids and set(ids) <= {1, 2, 3}  # the tones it learnt, as the fake-quantized model decodes them
    path = export_model(reloaded, tmp_path / "model.pt", "torchscript")
    assert check_export(reloaded, path, "torchscript")["ok"]


def test_convert_refuses_unobserved_ranges(trained_tiny):
    model = prepare_qat(copy.deepcopy(trained_tiny), QATConfig())
    with pytest.raises(AsrcError, match="feature_extractor.conv_layers.1.conv: activation range never observed"):
        convert_qat(model)


def test_float_state_is_the_float_models(qat_model, trained_tiny):
    assert float_state(qat_model).keys() == trained_tiny.state_dict().keys()


def test_dead_frames_pass_no_gradient_and_keep_their_values():
    from asrc.quant.qat import stop_dead_frames

    y = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, -2.0]]], requires_grad=True)  # frames: dead, live, live
    out = stop_dead_frames(y)
    assert torch.equal(out, y)
    out.sum().backward()
    assert y.grad.tolist() == [[[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]]


def test_qat_gradient_norm_near_float_with_silent_frames():
    """Near-silent stretches round to all-zero CNN frames (no conv bias, GELU(0) = 0); the
    feature projection's LayerNorm then sees zero variance and its gradient, straight through
    the rounding, is 1/sqrt(eps) where the float frame's is 1/std: QAT gradient norms of
    hundreds against ~10 in float, as on AN4 with the demo student, until dead frames pass none."""
    from asrc.models import build_model
    from quant_helpers import SEGMENT, TINY

    torch.manual_seed(0)
    model = build_model(TINY, TOKENS)
    with torch.no_grad():
        for block in model.feature_extractor.conv_layers:  # wav2vec 2.0's init: the CNN keeps its scale
            torch.nn.init.kaiming_normal_(block.conv.weight)
        model.feature_extractor.conv_layers[-1].conv.weight.mul_(30.0)  # features of variance ~10, the student's
    gen = torch.Generator().manual_seed(0)
    batch = [structured_utterance(10, gen) for _ in range(4)]
    silence = 5  # segments of near-silence (0.5 s) around each utterance
    wav = torch.stack([torch.cat([1e-3 * torch.randn(silence * SEGMENT, generator=gen), w,
                                  1e-3 * torch.randn(silence * SEGMENT, generator=gen)]) for w, _ in batch])
    pad = torch.zeros(silence, dtype=torch.long)
    classes = [torch.cat([pad, c, pad]) for _, c in batch]
    qat = prepare_qat(copy.deepcopy(model), QATConfig())
    set_fake_quant(qat, True)
    features = []
    qat.feature_projection.layer_norm.register_forward_hook(lambda _m, args, _o: features.append(args[0]) and None)

    def grad_norm(m):
        m.train()
        m.zero_grad()
        logits, _ = m(wav)
        target = torch.stack([frame_targets(c, logits.shape[1]) for c in classes])
        F.cross_entropy(logits[..., :4].reshape(-1, 4), target.reshape(-1)).backward()
        return torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]).norm().item()

    float_norm, qat_norm = grad_norm(model), grad_norm(qat)
    dead = (features[0] == 0).all(-1)
    assert dead.float().mean() > 0.2  # the batch has the frames in question
    assert qat_norm < 5 * float_norm, (qat_norm, float_norm)
