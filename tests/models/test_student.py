import pytest
import torch

import torch.nn.functional as F

from asrc.models import Wav2Vec2Config, build_model
from asrc.models.student import (
    RIDGE, _run_front_end, block_diagonal, build_student, conv_output_cosine, default_calibration, expand_groups,
    select_teacher_layers,
)
from asrc.models.wav2vec2 import plain_ops

# 4 conv layers (32 channels, total stride 40), 6 transformer layers of width 48.
TINY = dict(conv_layers=[[32, 10, 5], [32, 3, 2], [32, 3, 2], [32, 2, 2]], embed_dim=48, ffn_dim=96,
            num_heads=4, num_layers=6, pos_conv_kernel=16, pos_conv_groups=4, vocab_size=10)
TOKENS = [f"t{i}" for i in range(10)]


def tiny(**kw):
    return Wav2Vec2Config(**{**TINY, **kw})


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_model(tiny(), TOKENS).eval()


@pytest.fixture(scope="module")
def held_out():
    """Pink noise the kernels were not fitted on."""
    return default_calibration(batch=3, seconds=1.0, seed=123)


def conv_weight(model, i):
    return model.feature_extractor.conv_layers[i].conv.weight


def test_every_k_first_k_last_k_and_lists():
    # The Knowledge-Distillation-Toolkit's every_k: teacher layers 0, k, 2k, ... counted from 0.
    assert select_teacher_layers("every_k", 12, 4) == [1, 4, 7, 10]
    assert select_teacher_layers("every_k", 24, 4) == [1, 7, 13, 19]
    assert select_teacher_layers("every_k", 12, 6) == [1, 3, 5, 7, 9, 11]
    # Where k = L / n is not whole: evenly spread from the first layer.
    assert select_teacher_layers("every_k", 12, 5) == [1, 3, 5, 8, 10]
    assert select_teacher_layers("every_k", 6, 4) == [1, 2, 4, 5]
    assert select_teacher_layers("every_k", 12, 12) == list(range(1, 13))
    assert select_teacher_layers("every_k", 12, 0) == []
    assert select_teacher_layers("first_k", 12, 4) == [1, 2, 3, 4]
    assert select_teacher_layers("last_k", 12, 4) == [9, 10, 11, 12]
    assert select_teacher_layers([1, 1, 12], 12, 3) == [1, 1, 12]
    with pytest.raises(ValueError, match="explicit list"):
        select_teacher_layers("every_k", 3, 4)
    with pytest.raises(ValueError, match=r"\[0, 13\] are not teacher layers; layers are numbered 1..12"):
        select_teacher_layers([0, 5, 13], 12, 3)
    with pytest.raises(ValueError, match="lists 2 teacher layers"):
        select_teacher_layers([1, 2], 12, 3)
    with pytest.raises(ValueError, match="not one of"):
        select_teacher_layers("every_other", 12, 3)


def test_full_student_reproduces_the_teacher_exactly(teacher):
    student, report = build_student(teacher, teacher.config)
    assert report.layer_map == [1, 2, 3, 4, 5, 6]
    assert report.derived == [] and report.random == []
    assert len(report.copied) == len(list(student.parameters()))
    assert student.tokens == TOKENS
    wav = torch.randn(2, 3000)
    lengths = torch.tensor([3000, 2200])
    t_logits, t_len = teacher(wav, lengths)
    s_logits, s_len = student.eval()(wav, lengths)
    assert torch.equal(s_logits, t_logits) and torch.equal(s_len, t_len)
    assert report.conv_cosine == pytest.approx([1.0] * 4, abs=1e-6)


def test_shallow_student_copies_the_chosen_layers(teacher):
    student, report = build_student(teacher, tiny(num_layers=3))
    assert report.layer_map == [1, 3, 5]
    assert report.hidden_state_pairs() == [(1, 2), (2, 4), (3, 6)]  # the spans 1-2, 3-4, 5-6 end there
    for j, i in enumerate(report.layer_map):
        for (name, p), (_, q) in zip(student.encoder.layers[j].named_parameters(),
                                     teacher.encoder.layers[i - 1].named_parameters()):
            assert torch.equal(p, q), name
    assert report.random == [] and report.derived == []
    entry = next(t for t in report.tensors if t.name == "encoder.layers.1.fc1.weight")
    assert entry.action == "copied" and entry.source == ["encoder.layers.2.fc1.weight"]

    student, report = build_student(teacher, tiny(num_layers=2), layer_init=[1, 5])
    assert torch.equal(student.encoder.layers[1].fc2.weight, teacher.encoder.layers[4].fc2.weight)
    assert report.layer_init == "list"


def test_layer_reuse_student_starts_from_every_k_layers(teacher):
    student, report = build_student(teacher, tiny(num_layers=2, layer_reuse=3))
    assert report.layer_map == [1, 4]
    # Student hidden state 3 ends the three applications of layer 1, which stands for teacher
    # layers 1-3 and pairs with the output of teacher layer 3.
    assert report.hidden_state_pairs() == [(3, 3), (6, 6)]
    assert torch.equal(student.encoder.layers[0].self_attn.q_proj.weight, teacher.encoder.layers[0].self_attn.q_proj.weight)
    assert torch.equal(student.encoder.layers[1].fc1.weight, teacher.encoder.layers[3].fc1.weight)
    # Other initialisations pair each student layer with the layer it was copied from.
    _, listed = build_student(teacher, tiny(num_layers=2, layer_reuse=3), [2, 5])
    assert listed.hidden_state_pairs() == [(3, 2), (6, 5)]


def test_width_changes_are_reported_never_truncated(teacher):
    student, report = build_student(teacher, tiny(num_layers=2, ffn_dim=64))
    random = set(report.random)
    # fc2's bias lives in the embedding space, whose width did not change.
    assert random == {f"encoder.layers.{j}.{n}" for j in (0, 1) for n in ("fc1.weight", "fc1.bias", "fc2.weight")}
    entry = next(t for t in report.tensors if t.name == "encoder.layers.0.fc1.weight")
    assert "shape (64, 48) vs teacher encoder.layers.0.fc1.weight (96, 48)" in entry.note
    assert not torch.equal(student.encoder.layers[0].fc1.weight, teacher.encoder.layers[0].fc1.weight[:64])
    assert torch.equal(student.encoder.layers[0].self_attn.k_proj.weight, teacher.encoder.layers[0].self_attn.k_proj.weight)

    # Same shapes, other meaning: 8 heads split the projections differently from 4.
    student, report = build_student(teacher, tiny(num_layers=2, num_heads=8))
    assert set(report.random) == {f"encoder.layers.{j}.self_attn.{p}.{w}" for j in (0, 1)
                                  for p in ("q_proj", "k_proj", "v_proj", "out_proj") for w in ("weight", "bias")}
    assert "num_heads 8 vs teacher 4" in report.format()

    # A narrower model: the whole width-dependent part stays random, the conv front end is copied.
    student, report = build_student(teacher, tiny(num_layers=2, embed_dim=32, ffn_dim=64, pos_conv_groups=2))
    assert set(report.copied) == {n for n, _ in student.named_parameters() if n.startswith("feature_extractor.")} | {
        "feature_projection.layer_norm.weight", "feature_projection.layer_norm.bias", "ctc_head.bias"}
    assert {"ctc_head.weight", "mask_emb", "encoder.pos_conv.weight_g"} <= set(report.random)
    assert report.conv_cosine == pytest.approx([1.0] * 4, abs=1e-6)


def test_grouped_init_beats_copying_the_first_block_into_every_group(teacher, held_out):
    config = tiny(num_layers=1, conv_groups=2)
    cosines = {}
    for method in ("lstsq", "energy", "block_diagonal"):
        torch.manual_seed(1)
        student, report = build_student(teacher, config, conv_init=method)
        cosines[method] = conv_output_cosine(student, teacher, held_out)
        assert report.derived == [f"feature_extractor.conv_layers.{i}.conv.weight" for i in (1, 2, 3)]
        assert torch.equal(conv_weight(student, 0), conv_weight(teacher, 0))  # 1 input channel: not grouped
    # The deprecated fork: input block 0's weights in both groups.
    with torch.no_grad():
        for i in (1, 2, 3):
            conv_weight(student, i).copy_(conv_weight(teacher, i)[:, :16])
    fork = conv_output_cosine(student, teacher, held_out)
    last = {m: c[-1] for m, c in cosines.items()}
    assert last["lstsq"] > 0.8 > 0.5 > last["block_diagonal"] > fork[-1] + 0.1
    assert all(a > b for a, b in zip(cosines["lstsq"][1:], cosines["block_diagonal"][1:]))
    # The fit improves on the energy-matched kernel it starts from, at every grouped layer.
    assert all(a > b + 0.1 for a, b in zip(cosines["lstsq"][1:], cosines["energy"][1:]))
    assert all(a > b for a, b in zip(cosines["block_diagonal"][1:], fork[1:]))

    # block_diagonal is exactly the diagonal blocks of the teacher kernel.
    w = conv_weight(teacher, 1)
    torch.manual_seed(1)
    student, _ = build_student(teacher, config, conv_init="block_diagonal")
    assert torch.equal(conv_weight(student, 1)[:16], w[:16, :16])
    assert torch.equal(conv_weight(student, 1)[16:], w[16:, 16:])


def test_energy_init_matches_the_teachers_output_energy_per_channel(teacher):
    wav = default_calibration(batch=2, seconds=0.5, seed=7)
    lengths = torch.tensor([8000, 5000])
    student, _ = build_student(teacher, tiny(num_layers=1, conv_groups=2), conv_init="energy",
                               calibration=wav, calibration_lengths=lengths)
    s_acts, t_acts = _run_front_end(student, wav, lengths), _run_front_end(teacher, wav, lengths)
    for i in (1, 2, 3):  # each grouped layer on the student's own input, as it was rescaled
        s, t = s_acts.conv_out[i], t_acts.conv_out[i]
        energy = [sum(y[b, :, :n].double().square().sum(-1) for b, n in enumerate(t_acts.lengths[i].tolist()))
                  for y in (s, t)]
        assert torch.allclose(energy[0], energy[1], rtol=1e-4), i
        assert not torch.allclose(block_diagonal(conv_weight(teacher, i), 2), conv_weight(student, i), rtol=0.01)


def test_front_end_targets_are_the_conv_outputs_with_the_fast_path_on_or_off(teacher):
    wav = default_calibration(batch=2, seconds=0.5, seed=7)
    lengths = torch.tensor([8000, 8000])
    acts = _run_front_end(teacher, wav, lengths)  # eval, no autograd, CPU: the fast path
    x = wav.unsqueeze(1)
    with torch.no_grad(), plain_ops():
        for i, block in enumerate(teacher.feature_extractor.conv_layers):
            conv = block.conv(x)
            assert torch.equal(acts.conv_out[i], conv), i  # before norm and GELU
            x = block(x)
            assert torch.equal(acts.block_out[i], x), i
    # One command, one student: the fitted kernels do not depend on the fast path (off on GPU).
    config = tiny(num_layers=1, conv_groups=2)
    torch.manual_seed(1)
    fast, _ = build_student(teacher, config)
    torch.manual_seed(1)
    with plain_ops():
        plain, _ = build_student(teacher, config)
    for i in (1, 2, 3):
        assert torch.equal(conv_weight(fast, i), conv_weight(plain, i)), i


def test_lstsq_kernel_is_the_ridge_least_squares_solution():
    """One grouped layer whose input the student shares with the teacher, solved independently."""
    torch.manual_seed(0)
    config = Wav2Vec2Config(conv_layers=[[8, 10, 5], [8, 3, 2]], conv_bias=True, embed_dim=16, ffn_dim=32,
                            num_heads=2, num_layers=1, pos_conv_kernel=4, pos_conv_groups=2, vocab_size=10)
    teacher = build_model(config).eval()
    wav = default_calibration(batch=2, seconds=0.1, seed=3)
    student, _ = build_student(teacher, config.replace(conv_groups=2), calibration=wav)
    t0, t1 = teacher.feature_extractor.conv_layers
    with torch.no_grad(), plain_ops():
        x = t0(wav.unsqueeze(1)).double()  # [2, 8, 319]: conv layer 0 is copied, not grouped
        w, b = t1.conv.weight.double(), t1.conv.bias.double()
        y = F.conv1d(x, w, b, stride=2)  # the target: the teacher's conv output, before GELU
        # The prior: block-diagonal kernel, each output channel scaled to the teacher's energy.
        prior_w, prior_b = block_diagonal(w, 2), b
        y_prior = F.conv1d(x, prior_w, prior_b, stride=2, groups=2)
        scale = (y.square().sum((0, 2)) / y_prior.square().sum((0, 2))).sqrt()
        prior_w, prior_b = prior_w * scale[:, None, None], prior_b * scale
    for g in range(2):
        rows = slice(4 * g, 4 * g + 4)
        patches = x[:, rows].unfold(-1, 3, 2).permute(0, 2, 1, 3).reshape(-1, 12)  # [frames, 4 inputs x 3 taps]
        X = torch.cat([patches, torch.ones(len(patches), 1, dtype=torch.float64)], 1)
        Y = y[:, rows].transpose(1, 2).reshape(-1, 4)
        prior = torch.cat([prior_w[rows].reshape(4, 12), prior_b[rows, None]], 1).T  # [13, 4]
        lam = RIDGE * X.square().sum() / len(X)
        # min ||X W - Y||^2 + lam ||W - prior||^2 as one least-squares problem
        A = torch.cat([X, lam.sqrt() * torch.eye(13, dtype=torch.float64)])
        B = torch.cat([Y, lam.sqrt() * prior])
        solution = torch.linalg.lstsq(A, B).solution
        got = torch.cat([conv_weight(student, 1)[rows].reshape(4, 12), student.feature_extractor.conv_layers[1]
                         .conv.bias[rows, None]], 1).T.double()
        assert torch.allclose(got, solution, rtol=1e-4, atol=1e-5), g
        assert not torch.allclose(got, prior, rtol=1e-2, atol=1e-3)  # the fit moved away from the prior


def test_report_cosines_are_those_of_the_calibration_input(teacher):
    wav = default_calibration(batch=2, seconds=0.5, seed=7)
    lengths = torch.tensor([8000, 5000])
    student, report = build_student(teacher, tiny(num_layers=1, conv_groups=4), calibration=wav,
                                    calibration_lengths=lengths)
    assert report.calibration == "given waveforms (2, 8000)"
    assert report.conv_cosine == pytest.approx(conv_output_cosine(student, teacher, wav, lengths), abs=1e-6)
    assert report.conv_cosine[0] == pytest.approx(1.0, abs=1e-6) and report.conv_cosine[-1] > 0.5
    with pytest.raises(ValueError, match="receptive field"):
        build_student(teacher, tiny(num_layers=1, conv_groups=2), calibration=wav,
                      calibration_lengths=torch.tensor([8000, 50]))


def test_shared_kernels_start_from_the_average_and_fit_all_their_layers(teacher, held_out):
    torch.manual_seed(1)
    student, report = build_student(teacher, tiny(num_layers=1, conv_share=True), conv_init="block_diagonal")
    assert conv_weight(student, 1) is conv_weight(student, 2)
    assert torch.allclose(conv_weight(student, 1), (conv_weight(teacher, 1) + conv_weight(teacher, 2)) / 2)
    assert torch.equal(conv_weight(student, 3), conv_weight(teacher, 3))  # k=2: nothing to share with
    entry = next(t for t in report.tensors if t.name == "feature_extractor.conv_layers.1.conv.weight")
    assert entry.action == "derived"
    assert entry.source == ["feature_extractor.conv_layers.1.conv.weight", "feature_extractor.conv_layers.2.conv.weight"]
    assert "average of 2 teacher kernels" in entry.note and "shared by conv layers [1, 2]" in entry.note
    average = conv_output_cosine(student, teacher, held_out)

    torch.manual_seed(1)
    student, _ = build_student(teacher, tiny(num_layers=1, conv_share=True))
    fitted = conv_output_cosine(student, teacher, held_out)
    # Picking one teacher kernel serves its own layer only.
    with torch.no_grad():
        conv_weight(student, 1).copy_(conv_weight(teacher, 1))
    pick_first = conv_output_cosine(student, teacher, held_out)
    assert pick_first[1] == pytest.approx(1.0, abs=1e-6)
    assert min(fitted[1:]) > 0.85 > 0.5 > pick_first[2]
    assert fitted[3] > average[3] and fitted[3] > pick_first[3]


def test_grouped_teacher_into_dense_student_is_exact():
    torch.manual_seed(0)
    teacher = build_model(tiny(num_layers=1, conv_groups=2)).eval()
    student, report = build_student(teacher, tiny(num_layers=1))
    assert [t.action for t in report.tensors if ".conv." in t.name] == ["copied", "derived", "derived", "derived"]
    assert "nest in the student's 1" in report.format()
    wav = torch.randn(1, 2000)
    assert torch.allclose(student.eval()(wav)[0], teacher(wav)[0], atol=1e-5)


def test_grouped_kernel_helpers_round_trip():
    w = torch.randn(8, 2, 3)
    dense = expand_groups(w, 4)
    assert dense.shape == (8, 8, 3)
    assert torch.equal(block_diagonal(dense, 4), w)
    x = torch.randn(1, 8, 20)
    assert torch.allclose(torch.nn.functional.conv1d(x, w, groups=4), torch.nn.functional.conv1d(x, dense), atol=1e-6)


def test_structure_must_match_and_reports_serialise(teacher):
    with pytest.raises(ValueError, match="layer_norm_first: student True vs teacher False"):
        build_student(teacher, tiny(layer_norm_first=True))
    with pytest.raises(ValueError, match="conv_init"):
        build_student(teacher, tiny(), conv_init="copy_first_block")
    student, report = build_student(teacher, tiny(num_layers=2, conv_groups=2, vocab_size=12))
    assert student.tokens is None  # another vocabulary: the teacher's tokens do not apply
    d = report.to_dict()
    assert d["layer_map"] == [1, 4] and {t["action"] for t in d["tensors"]} == {"copied", "derived", "random"}
    text = report.format()
    assert "2<-4" in text and "ctc_head.weight" in text and "conv-layer output cosine" in text


def test_pad_waveforms():
    from asrc.core.batching import pad_waveforms

    batch, lengths = pad_waveforms([torch.ones(3), torch.full((5,), 2.0)])
    assert lengths.tolist() == [3, 5]
    assert batch.tolist() == [[1, 1, 1, 0, 0], [2, 2, 2, 2, 2]]
    with pytest.raises(ValueError, match="no calibration waveforms"):
        pad_waveforms([])
