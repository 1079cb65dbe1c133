"""The one configuration of asrc's wav2vec 2.0 CTC models.

Every compression knob is a field here; the YAML file of a model directory is exactly this
dataclass (``Wav2Vec2Config.to_yaml`` / ``from_yaml`` round-trip, unknown keys are an error).
Every value is checked against its field's annotation and range (:meth:`Wav2Vec2Config.validate`):
all problems in one :class:`ConfigError` line, which names the file a config came from.
"""

import dataclasses
import math
import numbers
import typing
from dataclasses import dataclass, field
from typing import List, Optional

import yaml

from asrc.core.config_files import check_known_keys
from asrc.errors import ConfigError

# The CNN of the wav2vec 2.0 checkpoints fairseq ships (their conv_feature_layers). fairseq's
# Wav2Vec2Config dataclass default ((512,10,5), (512,8,4), ...) differs: never take it from there.
BASE_CONV_LAYERS = [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2

EXTRACTOR_MODES = ("group_norm", "layer_norm")
#: Per-layer lists of a heterogeneous (pruned) transformer; None in a homogeneous one.
HETEROGENEOUS_KEYS = ("layer_num_heads", "layer_ffn_dims")
#: Keys written to config.yaml only when set (a model without them reads as before they existed).
OPTIONAL_KEYS = HETEROGENEOUS_KEYS + ("attention_head_dim",)


#: Fields that are probabilities (dropout rates, mask probabilities): in [0, 1].
PROBABILITY_KEYS = ("dropout", "attention_dropout", "activation_dropout", "feature_dropout", "final_dropout",
                    "layer_drop", "mask_time_prob", "mask_channel_prob")
#: Least value of the integer fields that have one (sizes, counts, kernels).
_INT_MINIMUM = {"conv_groups": 1, "embed_dim": 1, "ffn_dim": 1, "num_heads": 1, "num_layers": 0, "layer_reuse": 1,
                "pos_conv_kernel": 1, "pos_conv_groups": 1, "mask_time_length": 1, "mask_channel_length": 1,
                "vocab_size": 2}
#: How an error calls what a field must be, where the annotation alone says too little.
_WHAT = {"conv_layers": "a list of [channels, kernel, stride] lists of integers",
         "attention_head_dim": "an integer >= 1 (or null)",
         "layer_num_heads": "a list of integers >= 0 (or null)",
         "layer_ffn_dims": "a list of integers >= 0 (or null)"}


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_int_lists(v) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(c, (list, tuple)) and all(_is_int(x) for x in c)
                                                for c in v)


def _has_type(v, tp) -> bool:
    """Whether ``v`` fits the annotation ``tp`` (int, float (ints too), bool, str, Optional, List)."""
    if typing.get_origin(tp) is typing.Union:
        return any(_has_type(v, a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return isinstance(v, (list, tuple)) and all(_has_type(x, typing.get_args(tp)[0]) for x in v)
    if tp is type(None):
        return v is None
    if tp is int:
        return _is_int(v)
    if tp is float:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)
    if tp is bool:
        return isinstance(v, bool)
    if tp is str:
        return isinstance(v, str)
    raise TypeError(f"Wav2Vec2Config: no type check for annotation {tp}")


_TYPE_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
               str: ("a string", "strings")}


def _type_name(tp, plural: bool = False) -> str:
    """What the annotation ``tp`` asks for, in words: "a list of integers (or null)"."""
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a, plural) for a in args) + " (or null)"
    if typing.get_origin(tp) is list:
        return ("lists" if plural else "a list") + " of " + _type_name(typing.get_args(tp)[0], plural=True)
    return _TYPE_NAMES[tp][plural]


def _type_problem(name: str, v, tp) -> str:
    what = _WHAT.get(name) or _type_name(tp)
    if v is None:
        return f"{name} has no value (expected {what})"
    problem = f"{name}={v!r} is not {what}"
    if tp is float and isinstance(v, str):
        try:
            float(v)
        except ValueError:
            pass
        else:  # YAML 1.1 reads 1e-5 (no dot) as a string
            problem += f" (YAML reads {v} as a string: write it with a dot, e.g. 1.0e-5)"
    return problem


@dataclass
class Wav2Vec2Config:
    """Architecture of a wav2vec 2.0 encoder with a CTC head.

    Defaults are wav2vec2-base (12 post-LN layers, width 768) with the 32 letters of
    fairseq's ``dict.ltr.txt``.
    """

    # CNN feature extractor: one [channels, kernel, stride] per layer.
    conv_layers: List[List[int]] = field(default_factory=lambda: [list(c) for c in BASE_CONV_LAYERS])
    # "group_norm": per-channel norm on the first conv only (base); "layer_norm": LN in every conv (large-lv60).
    extractor_mode: str = "group_norm"
    conv_bias: bool = False
    # Grouped convolutions in every conv layer whose channel counts allow it (not the first: 1 input channel).
    conv_groups: int = 1
    # Conv layers of identical shape share one kernel (true weight sharing; strides may differ).
    conv_share: bool = False

    # Transformer.
    embed_dim: int = 768
    ffn_dim: int = 3072
    num_heads: int = 12
    num_layers: int = 12
    # Heterogeneous layers (structured pruning, asrc.prune): per transformer layer the number of
    # attention heads (0: no attention sub-layer) and the feed-forward width (0: no feed-forward
    # sub-layer). None: num_heads / ffn_dim in every layer. A layer with h heads projects to
    # h * head_dim (head_dim: attention_head_dim, else embed_dim // num_heads).
    layer_num_heads: Optional[List[int]] = None
    layer_ffn_dims: Optional[List[int]] = None
    # Size of one attention head when it is not embed_dim // num_heads (a model whose width was
    # pruned, asrc.prune's "hidden" structure, keeps its heads' size). None: embed_dim // num_heads.
    attention_head_dim: Optional[int] = None
    # Each transformer layer is applied this many times in a row (ALBERT-style reuse).
    layer_reuse: int = 1
    # False: post-LN "base" layout; True: pre-LN "large" layout.
    layer_norm_first: bool = False
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    layer_norm_eps: float = 1e-5

    # Regularisation (active in training mode only).
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    feature_dropout: float = 0.0
    final_dropout: float = 0.0
    layer_drop: float = 0.0
    # wav2vec 2.0 fine-tuning masks (training mode, when the caller asks for them).
    mask_time_prob: float = 0.0
    mask_time_length: int = 10
    mask_channel_prob: float = 0.0
    mask_channel_length: int = 64

    # Per-utterance zero-mean unit-variance waveform normalisation inside the model.
    normalize_waveform: bool = False
    vocab_size: int = 32

    def __post_init__(self):
        # Normalise well-typed values only (numpy integers, tuples); validate() names the rest.
        if _is_int_lists(self.conv_layers):
            self.conv_layers = [[int(x) for x in c] for c in self.conv_layers]
        for name in HETEROGENEOUS_KEYS:
            v = getattr(self, name)
            if isinstance(v, (list, tuple)) and all(_is_int(x) for x in v):
                setattr(self, name, [int(x) for x in v])
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type in (int, Optional[int]) and _is_int(v) and type(v) is not int:
                setattr(self, f.name, int(v))
        self.validate()

    def validate(self):
        """Raise a :class:`ConfigError` naming every field of a wrong type (by its annotation) or
        out of range, in one line."""
        problems, wrong_type = [], set()
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not _has_type(v, f.type):
                wrong_type.add(f.name)
                problems.append(_type_problem(f.name, v, f.type))

        def ok(*names):
            return not wrong_type.intersection(names)

        if ok("conv_layers"):
            if not self.conv_layers:
                problems.append("conv_layers is empty")
            for i, c in enumerate(self.conv_layers):
                if len(c) != 3 or min(c) < 1:
                    problems.append(f"conv_layers[{i}]={c} is not [channels>0, kernel>0, stride>0]")
        if (ok("conv_layers", "conv_groups") and self.conv_groups > 1 and len(self.conv_layers) > 1
                and all(len(c) == 3 for c in self.conv_layers)):
            channels = [c[0] for c in self.conv_layers]
            if not any(a % self.conv_groups == 0 and b % self.conv_groups == 0 for a, b in zip(channels, channels[1:])):
                problems.append(f"conv_groups={self.conv_groups} divides the channels of no conv layer "
                                f"({channels}): no layer would be grouped")
        if ok("extractor_mode") and self.extractor_mode not in EXTRACTOR_MODES:
            problems.append(f"extractor_mode={self.extractor_mode!r} is not one of {EXTRACTOR_MODES}")
        for name, least in _INT_MINIMUM.items():
            v = getattr(self, name)
            if ok(name) and v < least:
                problems.append(f"{name}={v} must be >= {least}")
        if ok("attention_head_dim") and self.attention_head_dim is not None and self.attention_head_dim < 1:
            problems.append(f"attention_head_dim={self.attention_head_dim!r} is not {_WHAT['attention_head_dim']}")
        if (ok("attention_head_dim", "embed_dim", "num_heads") and self.attention_head_dim is None
                and self.num_heads >= 1 and self.embed_dim % self.num_heads):
            problems.append(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if ok("embed_dim", "pos_conv_groups") and self.pos_conv_groups >= 1 and self.embed_dim % self.pos_conv_groups:
            problems.append(f"embed_dim={self.embed_dim} is not divisible by pos_conv_groups={self.pos_conv_groups}")
        for name in HETEROGENEOUS_KEYS:
            v = getattr(self, name)
            if v is None or not ok(name):
                continue
            if any(x < 0 for x in v):
                problems.append(f"{name}={v!r} is not {_WHAT[name]}")
            elif ok("num_layers") and len(v) != self.num_layers:
                problems.append(f"{name} has {len(v)} entries for num_layers={self.num_layers}")
        for name in PROBABILITY_KEYS:
            v = getattr(self, name)
            if ok(name) and not 0.0 <= v <= 1.0:
                problems.append(f"{name}={v} is not in [0, 1]")
        if ok("layer_norm_eps") and not (math.isfinite(self.layer_norm_eps) and self.layer_norm_eps > 0):
            problems.append(f"layer_norm_eps={self.layer_norm_eps} must be > 0 (and finite)")
        if problems:
            raise ConfigError("invalid Wav2Vec2Config: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        """Size of one attention head, the same in every layer."""
        return self.embed_dim // self.num_heads if self.attention_head_dim is None else self.attention_head_dim

    def heads(self, layer: int) -> int:
        """Attention heads of transformer layer ``layer`` (0-based); 0 = no attention sub-layer."""
        return self.num_heads if self.layer_num_heads is None else self.layer_num_heads[layer]

    def ffn_width(self, layer: int) -> int:
        """Feed-forward width of transformer layer ``layer`` (0-based); 0 = no feed-forward sub-layer."""
        return self.ffn_dim if self.layer_ffn_dims is None else self.layer_ffn_dims[layer]

    @property
    def is_heterogeneous(self) -> bool:
        """Layers differ from one another, or heads are not embed_dim // num_heads wide (pruned)."""
        return any(getattr(self, name) is not None for name in OPTIONAL_KEYS)

    @property
    def conv_dim(self) -> int:
        """Channels of the last conv layer (input of the feature projection)."""
        return self.conv_layers[-1][0]

    @property
    def total_stride(self) -> int:
        s = 1
        for _, _, stride in self.conv_layers:
            s *= stride
        return s

    @property
    def receptive_field(self) -> int:
        """Samples seen by one output frame (400 for the base front end)."""
        rf, jump = 1, 1
        for _, k, s in self.conv_layers:
            rf += (k - 1) * jump
            jump *= s
        return rf

    def to_dict(self) -> dict:
        """The fields as plain data; the :data:`OPTIONAL_KEYS` only when set, so the config of a
        homogeneous model reads (and is written) exactly as before they existed."""
        d = dataclasses.asdict(self)
        for name in OPTIONAL_KEYS:
            if d[name] is None:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "Wav2Vec2Config":
        """The config of the mapping ``d``; ``source`` (the file it came from) starts every error."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of config keys, got {type(d).__name__}")
        check_known_keys(d, (f.name for f in dataclasses.fields(cls)), source, "Wav2Vec2Config keys")
        try:
            return cls(**d)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from e

    def replace(self, **changes) -> "Wav2Vec2Config":
        return self.from_dict({**self.to_dict(), **changes}, source="replace()")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text_or_path, allow_empty: bool = True) -> "Wav2Vec2Config":
        """The config in a YAML file (a path) or text. An empty one (no keys) is the defaults
        (wav2vec2-base), or with ``allow_empty=False`` an error: the config.yaml of a model directory
        always holds its keys."""
        import os

        source = "config"
        text = text_or_path
        if isinstance(text_or_path, os.PathLike) or (isinstance(text_or_path, str) and "\n" not in text_or_path
                                                        and os.path.exists(text_or_path)):
            source = str(text_or_path)
            try:
                with open(text_or_path, encoding="utf-8") as f:
                    text = f.read()
            except UnicodeDecodeError as e:
                raise ConfigError(f"{source}: not a text file ({e})") from None
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML: {e}") from e
        if d is None or d == {}:
            if not allow_empty:
                raise ConfigError(f"{source}: is empty (no Wav2Vec2Config keys); a model directory's config.yaml "
                                  f"holds the whole architecture")
            d = {}
        return cls.from_dict(d, source=source)
