"""Distillation objectives for wav2vec 2.0 CTC students, all masked to valid frames.

Every function takes padded ``[batch, frame, ...]`` tensors and the valid frame counts
``lengths [batch]``; padded frames never enter a value or a denominator, so a batch gives the
same loss whatever it is padded to. The five terms of the distillation objective (the names
are those of the original toolkit's ``final_loss_coeff``):

``kd_loss``
    KL(teacher || student) of the CTC posteriors softened by the temperature ``T``, summed over
    the vocabulary, averaged over valid frames, times ``T**2`` (Hinton et al., 2015: keeps the
    gradient scale independent of ``T``).
``student_loss``
    CTC of the student on the labels (blank 0), summed over the batch and divided by the number
    of target tokens (fairseq's wav2vec 2.0 fine-tuning normalisation), so that it is a
    per-token quantity of the same order as the per-frame terms.
``hidden_loss``
    DistilHuBERT-style layer-to-layer distillation: a linear prediction head per mapped layer
    maps a student hidden state to the teacher's width, and the loss is the L1 distance (mean
    over valid frames and dimensions) plus ``-log(sigmoid(cos))`` of the cosine similarity
    (mean over valid frames), as in DistilHuBERT; averaged over the mapped layers.
``features_pen``
    The mean squared CNN feature (fairseq's feature penalty), over valid frames.
``cos_embed_loss``
    ``1 - cos`` between the student's and the teacher's logit vectors, averaged over valid
    frames (a cosine embedding loss with target 1).

The total is the weighted sum (:class:`LossWeights`, every weight from the YAML: the student
spec's ``distill.loss_weights``, :mod:`asrc.models.student_spec`).
"""

import math
from typing import Dict, List, Mapping, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asrc.errors import ConfigError
# The weights are configuration, read with the student spec; re-exported here beside the terms.
from asrc.models.student_spec import LOSS_TERMS, LossWeights

__all__ = [
    "LOSS_TERMS",
    "LossWeights",
    "valid_mask",
    "kd_loss",
    "ctc_loss",
    "features_pen",
    "cos_embed_loss",
    "hidden_state_loss",
    "HiddenStatePredictor",
]

def valid_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[batch]`` lengths -> ``[batch, max_len]`` bool mask, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def _check_frames(name: str, x: Tensor, lengths: Tensor):
    if x.dim() < 2 or lengths.shape != (x.shape[0],):
        raise ValueError(f"{name}: expected [batch, frame, ...] and lengths [batch], "
                         f"got {tuple(x.shape)} and {tuple(lengths.shape)}")
    if int(lengths.max()) > x.shape[1] or int(lengths.min()) < 0:
        raise ValueError(f"{name}: lengths {lengths.tolist()} out of range for {x.shape[1]} frames")


def _masked_frame_mean(per_frame: Tensor, lengths: Tensor) -> Tensor:
    """Mean of ``per_frame [batch, frame]`` over valid frames (0 when there are none)."""
    mask = valid_mask(lengths, per_frame.shape[1])
    total = torch.where(mask, per_frame, torch.zeros_like(per_frame)).sum()
    return total / mask.sum().clamp(min=1)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, lengths: Tensor, temperature: float = 1.0) -> Tensor:
    """``T**2 * mean over valid frames of KL(softmax(t/T) || softmax(s/T))``.

    student_logits, teacher_logits: ``[batch, frame, vocab]``; lengths: ``[batch]``.
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"kd_loss: student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"kd_loss: temperature must be a finite number > 0, got {temperature}")
    _check_frames("kd_loss", student_logits, lengths)
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return _masked_frame_mean(kl, lengths) * temperature**2


def ctc_loss(logits: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor, blank: int = 0) -> Tensor:
    """CTC on valid frames, summed over the batch, divided by the number of target tokens.

    logits: ``[batch, frame, vocab]``; targets: ``[batch, label]`` padded with any value
    (ESPnet pads with -1) beyond ``target_lengths``. An utterance whose labels cannot be
    aligned to its frames contributes 0 (``zero_infinity``) instead of an infinite loss.
    """
    _check_frames("ctc_loss", logits, lengths)
    if targets.dim() != 2 or target_lengths.shape != (targets.shape[0],) or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"ctc_loss: targets {tuple(targets.shape)} / target_lengths {tuple(target_lengths.shape)} "
                         f"do not fit logits {tuple(logits.shape)}")
    labels = valid_mask(target_lengths, targets.shape[1])
    if bool((targets[labels] == blank).any()):
        raise ValueError(f"ctc_loss: a target is the blank index {blank}; the token list and the labels disagree")
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)
    loss = F.ctc_loss(log_probs, targets.clamp(min=0), lengths, target_lengths, blank=blank,
                      reduction="sum", zero_infinity=True)
    return loss / target_lengths.sum().clamp(min=1)


def features_pen(features: Tensor, lengths: Tensor) -> Tensor:
    """Mean of ``features**2`` over valid frames and channels. features: ``[batch, frame, channel]``."""
    _check_frames("features_pen", features, lengths)
    return _masked_frame_mean(features.float().pow(2).mean(-1), lengths)


def cos_embed_loss(student_logits: Tensor, teacher_logits: Tensor, lengths: Tensor) -> Tensor:
    """Mean over valid frames of ``1 - cos(student, teacher)`` of the logit vectors."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"cos_embed_loss: student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} differ")
    _check_frames("cos_embed_loss", student_logits, lengths)
    cos = F.cosine_similarity(student_logits.float(), teacher_logits.float(), dim=-1)
    return _masked_frame_mean(1.0 - cos, lengths)


def hidden_state_loss(prediction: Tensor, target: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
    """``(l1, cos_term)`` between predicted and teacher hidden states ``[batch, frame, dim]``.

    l1: mean absolute difference over valid frames and dimensions; cos_term: mean over valid
    frames of ``-log(sigmoid(cos(prediction, target)))``.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"hidden_state_loss: prediction {tuple(prediction.shape)} and teacher hidden state "
                         f"{tuple(target.shape)} differ")
    _check_frames("hidden_state_loss", prediction, lengths)
    prediction, target = prediction.float(), target.float()
    l1 = _masked_frame_mean((prediction - target).abs().mean(-1), lengths)
    cos = F.cosine_similarity(prediction, target, dim=-1)
    return l1, _masked_frame_mean(-F.logsigmoid(cos), lengths)


class HiddenStatePredictor(nn.Module):
    """Linear prediction heads from student hidden states to the teacher's.

    ``layer_map`` maps a student hidden-state index to a teacher hidden-state index (index 0 is
    the input of the first transformer layer, ``i`` the output of layer ``i``; see
    :class:`asrc.models.EncoderOutput`). Head ``s{i}_t{j}`` is ``Linear(student_dim, teacher_dim)``.
    """

    def __init__(self, layer_map: Mapping[int, int], student_dim: int, teacher_dim: int):
        super().__init__()
        if not layer_map:
            raise ConfigError("hidden_loss needs a non-empty teacher_layer_map")
        self.layer_map = dict(sorted((int(s), int(t)) for s, t in layer_map.items()))
        self.heads = nn.ModuleDict({self.head_name(s, t): nn.Linear(student_dim, teacher_dim)
                                    for s, t in self.layer_map.items()})

    @staticmethod
    def head_name(student_layer: int, teacher_layer: int) -> str:
        return f"s{student_layer}_t{teacher_layer}"

    def forward(self, student_hidden: Sequence[Tensor], teacher_hidden: Sequence[Tensor],
                lengths: Tensor) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Returns the loss averaged over mapped layers and its parts (``hidden_l1``, ``hidden_cos``)."""
        l1s: List[Tensor] = []
        coss: List[Tensor] = []
        for s, t in self.layer_map.items():
            if s >= len(student_hidden) or t >= len(teacher_hidden):
                raise ValueError(f"teacher_layer_map {s}->{t}: the student has {len(student_hidden)} and the "
                                 f"teacher {len(teacher_hidden)} hidden states")
            l1, cos = hidden_state_loss(self.heads[self.head_name(s, t)](student_hidden[s]), teacher_hidden[t], lengths)
            l1s.append(l1)
            coss.append(cos)
        l1 = torch.stack(l1s).mean()
        cos = torch.stack(coss).mean()
        return l1 + cos, {"hidden_l1": l1.detach(), "hidden_cos": cos.detach()}
