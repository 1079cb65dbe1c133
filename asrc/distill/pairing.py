"""Checks that a teacher and a student can be distilled into each other, and the layer map.

- Tokens: the CTC output rows must mean the same symbols. Index 0 is the CTC blank whatever
  it is called (``<blank>`` in asrc/ESPnet lists, ``<pad>`` in Hugging Face, ``<s>`` in
  fairseq), every other index must carry the same token.
- Frames: the KL and cosine terms compare the two models frame by frame, so both CNN front
  ends must produce the same number of frames for every input: the same kernels and strides.
  Channel counts, groups and kernel sharing may differ (``conv_groups: 2`` keeps strides).
- Layer map: student hidden state ``i`` -> teacher hidden state ``j`` (0 = the input of the
  first transformer layer, ``i`` = output of the i-th layer application).
"""

from typing import Dict, Mapping, Optional, Sequence

from asrc.errors import ConfigError
from asrc.models.config import Wav2Vec2Config

__all__ = ["check_same_tokens", "check_same_frames", "num_hidden_states", "default_layer_map", "resolve_layer_map"]


def check_same_tokens(teacher_tokens: Sequence[str], student_tokens: Sequence[str],
                      teacher_name: str = "teacher", student_name: str = "student"):
    """Raise :class:`ConfigError` naming the first differences unless the token lists agree."""
    t, s = list(teacher_tokens), list(student_tokens)
    if len(t) != len(s):
        raise ConfigError(f"token sets differ: {teacher_name} has {len(t)} tokens, {student_name} has {len(s)}; "
                          f"teacher and student must share one token list")
    diffs = [f"{i}: {a!r} vs {b!r}" for i, (a, b) in enumerate(zip(t, s)) if i > 0 and a != b]
    if diffs:
        raise ConfigError(f"token sets differ between {teacher_name} and {student_name} at "
                          f"{len(diffs)} indices ({'; '.join(diffs[:8])}{' ...' if len(diffs) > 8 else ''}); "
                          f"teacher and student must share one token list")


def check_same_frames(teacher: Wav2Vec2Config, student: Wav2Vec2Config):
    """Raise :class:`ConfigError` unless both front ends have the same kernels and strides."""
    tk = [(k, s) for _, k, s in teacher.conv_layers]
    sk = [(k, s) for _, k, s in student.conv_layers]
    if tk != sk:
        raise ConfigError(
            f"teacher and student CNN front ends give different frame counts: teacher (kernel, stride) per layer "
            f"{tk}, student {sk}. Frame-level distillation needs the same kernels and strides "
            f"(conv_groups and channel counts may differ)")


def num_hidden_states(config: Wav2Vec2Config) -> int:
    return config.num_layers * config.layer_reuse + 1


def default_layer_map(num_student_layers: int, num_teacher_layers: int) -> Dict[int, int]:
    """Every student layer to the teacher layer at the same relative depth, ``ceil(i * T / S)``.

    4 of 12 -> {1: 3, 2: 6, 3: 9, 4: 12}; 5 of 12 -> 3, 5, 8, 10, 12: the pairs ``every_k``
    initialisation (:mod:`asrc.models.student`) uses: a student layer initialised from the
    first layer of a span of teacher layers learns to compute what the whole span computes.
    """
    if num_student_layers < 1 or num_teacher_layers < 1:
        raise ConfigError(f"no transformer layers to map (student {num_student_layers}, teacher {num_teacher_layers})")
    return {i: -(-i * num_teacher_layers // num_student_layers) for i in range(1, num_student_layers + 1)}


def _state_index(value) -> int:
    """A hidden-state index: an integer (or a string or integral float spelling one); a bool, a
    fractional or non-finite number is a ValueError (``int()`` would truncate 2.5 and overflow on inf)."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, float) and not value.is_integer():  # also inf and nan
        raise ValueError(value)
    return int(value)


def resolve_layer_map(layer_map: Optional[Mapping], student: Wav2Vec2Config, teacher: Wav2Vec2Config) -> Dict[int, int]:
    """The validated ``{student_state: teacher_state}`` map (``None``/empty -> :func:`default_layer_map`)."""
    ns, nt = num_hidden_states(student), num_hidden_states(teacher)
    if not layer_map:
        # Over layer applications: with layer_reuse, hidden state i * reuse ends layer i.
        return default_layer_map(ns - 1, nt - 1)
    resolved, problems = {}, []
    for s, t in dict(layer_map).items():
        try:
            si, ti = _state_index(s), _state_index(t)
        except (TypeError, ValueError, OverflowError):
            problems.append(f"{s!r}: {t!r} is not an integer pair")
            continue
        if not 0 <= si < ns:
            problems.append(f"student state {si} not in [0, {ns - 1}]")
        if not 0 <= ti < nt:
            problems.append(f"teacher state {ti} not in [0, {nt - 1}]")
        resolved[si] = ti
    if problems:
        raise ConfigError("teacher_layer_map: " + "; ".join(problems))
    return resolved
