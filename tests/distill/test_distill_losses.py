import math

import pytest
import torch
import torch.nn.functional as F

from asrc.distill.losses import (
    HiddenStatePredictor, LossWeights, cos_embed_loss, ctc_loss, features_pen, hidden_state_loss, kd_loss,
)
from asrc.errors import ConfigError

# Teacher [ln 3, 0] -> p = [3/4, 1/4]; student [0, 0] -> q = [1/2, 1/2]:
# KL(p || q) = 3/4 ln(3/2) + 1/4 ln(1/2), worked out by hand.
KL_HAND = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
GARBAGE = 1.0e4


_GARBAGE_GEN = torch.Generator().manual_seed(0)


def garbage(*shape):
    """Padding filler: random logits, different across the vocabulary and from call to call (a
    constant filler gives uniform distributions, whose KL is 0, so counting padded frames would
    go unnoticed); spread 10, not one-hot, so that any two fillers differ in distribution."""
    return 10.0 * torch.randn(*shape, generator=_GARBAGE_GEN)


def test_kd_loss_hand_computed_value():
    assert KL_HAND == pytest.approx(0.1308120, abs=1e-7)
    student = torch.tensor([[[0.0, 0.0]]])
    teacher = torch.tensor([[[math.log(3.0), 0.0]]])
    assert kd_loss(student, teacher, torch.tensor([1])).item() == pytest.approx(KL_HAND, rel=1e-6)
    # KL(p || p) = 0, and the direction matters: KL(q || p) is another number.
    assert kd_loss(teacher, teacher, torch.tensor([1])).item() == pytest.approx(0.0, abs=1e-7)
    reverse = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kd_loss(teacher, student, torch.tensor([1])).item() == pytest.approx(reverse, rel=1e-6)


def test_kd_loss_temperature_squared():
    # At T=2 the teacher [2 ln 3, 0] softens to the same p as above; the student [0, 0] stays q.
    student = torch.tensor([[[0.0, 0.0]]])
    teacher = torch.tensor([[[2 * math.log(3.0), 0.0]]])
    assert kd_loss(student, teacher, torch.tensor([1]), temperature=2.0).item() == pytest.approx(4 * KL_HAND, rel=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(student, teacher, torch.tensor([1]), temperature=0.0)


def test_kd_loss_averages_over_valid_frames_only():
    # Two utterances of 3 and 1 valid frames padded to 5; exactly one valid frame differs (by
    # KL_HAND), every other valid frame agrees: the mean over the 4 valid frames is KL_HAND / 4.
    # (Summing over padded frames or dividing by batch * frames, as the deprecated toolkit
    # did, gives other numbers.)
    student = torch.zeros(2, 5, 2)
    teacher = torch.zeros(2, 5, 2)
    teacher[0, 1] = torch.tensor([math.log(3.0), 0.0])
    lengths = torch.tensor([3, 1])
    student[0, 3:], teacher[0, 3:] = garbage(2, 2), garbage(2, 2)  # padding: must not count
    student[1, 1:], teacher[1, 1:] = garbage(4, 2), garbage(4, 2)
    assert kd_loss(student, teacher, lengths).item() == pytest.approx(KL_HAND / 4, rel=1e-6)


def test_kd_loss_padding_invariance_random():
    torch.manual_seed(0)
    lengths = torch.tensor([7, 3, 5])
    s, t = torch.randn(3, 7, 6), torch.randn(3, 7, 6)
    value = kd_loss(s, t, lengths, temperature=3.0)
    padded_s = torch.cat([s, garbage(3, 4, 6)], 1)
    padded_t = torch.cat([t, garbage(3, 4, 6)], 1)
    padded_s[1, 3:7], padded_t[1, 3:7] = garbage(4, 6), garbage(4, 6)  # inside the padded length too
    assert kd_loss(padded_s, padded_t, lengths, temperature=3.0).item() == pytest.approx(value.item(), rel=1e-6)
    # Same as concatenating the valid frames of every utterance.
    flat_s = torch.cat([s[i, :n] for i, n in enumerate(lengths.tolist())])[None]
    flat_t = torch.cat([t[i, :n] for i, n in enumerate(lengths.tolist())])[None]
    assert kd_loss(flat_s, flat_t, torch.tensor([15]), 3.0).item() == pytest.approx(value.item(), rel=1e-6)
    # Gradients reach valid frames only.
    s.requires_grad_(True)
    kd_loss(s, t, lengths).backward()
    assert s.grad[1, 3:].abs().sum() == 0 and s.grad[1, :3].abs().sum() > 0


def test_ctc_loss_is_per_target_token_and_padding_invariant():
    torch.manual_seed(1)
    logits = torch.randn(2, 12, 5)
    lengths = torch.tensor([12, 8])
    targets = torch.tensor([[1, 2, 2, 3], [4, 1, -1, -1]])  # ESPnet pads labels with -1
    target_lengths = torch.tensor([4, 2])
    value = ctc_loss(logits, lengths, targets, target_lengths)
    per_utt = [F.ctc_loss(logits[i, :n].log_softmax(-1)[:, None], targets[i:i + 1, :m], torch.tensor([n]),
                          torch.tensor([m]), reduction="sum")
               for i, (n, m) in enumerate(zip(lengths.tolist(), target_lengths.tolist()))]
    assert value.item() == pytest.approx((sum(per_utt) / 6).item(), rel=1e-5)
    padded = torch.cat([logits, garbage(2, 3, 5)], 1)
    padded[1, 8:12] = garbage(4, 5)
    assert ctc_loss(padded, lengths, targets, target_lengths).item() == pytest.approx(value.item(), rel=1e-5)


def test_ctc_loss_rejects_blank_labels_and_zeroes_impossible_alignments():
    logits = torch.randn(1, 4, 5)
    with pytest.raises(ValueError, match="blank"):
        ctc_loss(logits, torch.tensor([4]), torch.tensor([[1, 0]]), torch.tensor([2]))
    # 3 repeated labels need 5 frames: infeasible in 4 -> 0 instead of inf.
    assert ctc_loss(logits, torch.tensor([4]), torch.tensor([[1, 1, 1]]), torch.tensor([3])).item() == 0.0


def test_features_pen_valid_frames():
    feats = torch.full((2, 4, 3), GARBAGE)
    feats[0, :2] = 2.0
    feats[1, :1] = 1.0
    # (2 frames * 4 + 1 frame * 1) / 3 valid frames
    assert features_pen(feats, torch.tensor([2, 1])).item() == pytest.approx(3.0)


def test_cos_embed_loss():
    s = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [9.0, 1.0]]])
    t = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-9.0, -1.0]]])
    # 1 - cos: 0 (same direction), 1 (orthogonal), 2 (opposite); the 4th frame is padding (2 if counted).
    assert cos_embed_loss(s, t, torch.tensor([3])).item() == pytest.approx(1.0)


def test_hidden_state_loss_and_predictor():
    x = torch.randn(2, 5, 4)
    lengths = torch.tensor([5, 2])
    l1, cos = hidden_state_loss(x, x, lengths)
    assert l1.item() == 0.0
    assert cos.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))), rel=1e-6)  # -log sigmoid(1)
    target = x.clone()
    target[0] += 1.0
    target[1, 2:] = garbage(3, 4)  # padding
    l1, cos = hidden_state_loss(x, target, lengths)
    assert l1.item() == pytest.approx(5 / 7)  # |diff| = 1 on utterance 0's 5 frames, 0 on the other 2
    cosines = torch.cat([F.cosine_similarity(x[0], target[0], dim=-1), torch.ones(2)])
    assert cos.item() == pytest.approx(-F.logsigmoid(cosines).mean().item(), rel=1e-6)

    predictor = HiddenStatePredictor({1: 2, "2": 4}, student_dim=4, teacher_dim=6)
    assert predictor.layer_map == {1: 2, 2: 4} and set(predictor.heads) == {"s1_t2", "s2_t4"}
    student = [torch.randn(2, 5, 4) for _ in range(3)]
    teacher = [torch.randn(2, 5, 6) for _ in range(5)]
    loss, parts = predictor(student, teacher, lengths)
    assert loss.item() == pytest.approx((parts["hidden_l1"] + parts["hidden_cos"]).item())
    loss.backward()
    assert all(p.grad is not None for p in predictor.parameters())
    with pytest.raises(ValueError, match="hidden states"):
        HiddenStatePredictor({3: 2}, 4, 6)(student, teacher, lengths)


def test_loss_weights():
    w = LossWeights.from_dict({"kd_loss": 0.5, "student_loss": 0.5})
    terms = {"kd_loss": torch.tensor(2.0), "student_loss": torch.tensor(4.0), "features_pen": torch.tensor(100.0)}
    assert w.total(terms).item() == 3.0
    with pytest.raises(ConfigError, match="unknown loss terms \\['kd'\\]"):
        LossWeights.from_dict({"kd": 1.0})
    with pytest.raises(ConfigError, match=">= 0"):
        LossWeights.from_dict({"student_loss": -1})
    with pytest.raises(ConfigError, match=">= 0"):
        LossWeights.from_dict({"student_loss": True})
    with pytest.raises(ConfigError, match="nothing to train"):
        LossWeights.from_dict({"kd_loss": 0})
    with pytest.raises(ValueError, match="hidden_loss"):
        LossWeights.from_dict({"hidden_loss": 1.0}).total(terms)
