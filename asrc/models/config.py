"""The one configuration of asrc's wav2vec 2.0 CTC models.

Every compression knob is a field here; the YAML file of a model directory is exactly this
dataclass (``Wav2Vec2Config.to_yaml`` / ``from_yaml`` round-trip, unknown keys are an error).
"""

import dataclasses
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
        self.conv_layers = [list(map(int, c)) for c in self.conv_layers]
        for name in HETEROGENEOUS_KEYS:
            v = getattr(self, name)
            if isinstance(v, (list, tuple)) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
                setattr(self, name, [int(x) for x in v])
        self.validate()

    def validate(self):
        problems = []
        if not self.conv_layers:
            problems.append("conv_layers is empty")
        for i, c in enumerate(self.conv_layers):
            if len(c) != 3 or min(c) < 1:
                problems.append(f"conv_layers[{i}]={c} is not [channels>0, kernel>0, stride>0]")
        if self.extractor_mode not in EXTRACTOR_MODES:
            problems.append(f"extractor_mode={self.extractor_mode!r} is not one of {EXTRACTOR_MODES}")
        if self.conv_groups < 1:
            problems.append(f"conv_groups={self.conv_groups} must be >= 1")
        if self.attention_head_dim is None:
            if self.embed_dim % self.num_heads:
                problems.append(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        elif type(self.attention_head_dim) is not int or self.attention_head_dim < 1:
            problems.append(f"attention_head_dim={self.attention_head_dim!r} is not an integer >= 1 (or null)")
        if self.embed_dim % self.pos_conv_groups:
            problems.append(f"embed_dim={self.embed_dim} is not divisible by pos_conv_groups={self.pos_conv_groups}")
        for name in HETEROGENEOUS_KEYS:
            v = getattr(self, name)
            if v is None:
                continue
            if not (isinstance(v, list) and all(type(x) is int and x >= 0 for x in v)):
                problems.append(f"{name}={v!r} is not a list of integers >= 0")
            elif len(v) != self.num_layers:
                problems.append(f"{name} has {len(v)} entries for num_layers={self.num_layers}")
        if self.num_layers < 0 or self.layer_reuse < 1:
            problems.append(f"num_layers={self.num_layers} / layer_reuse={self.layer_reuse} out of range")
        for name in ("dropout", "attention_dropout", "activation_dropout", "feature_dropout",
                     "final_dropout", "layer_drop", "mask_time_prob", "mask_channel_prob"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                problems.append(f"{name}={v} is not in [0, 1]")
        if self.vocab_size < 2:
            problems.append(f"vocab_size={self.vocab_size} must be >= 2")
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
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of config keys, got {type(d).__name__}")
        check_known_keys(d, (f.name for f in dataclasses.fields(cls)), source, "Wav2Vec2Config keys")
        return cls(**d)

    def replace(self, **changes) -> "Wav2Vec2Config":
        return self.from_dict({**self.to_dict(), **changes}, source="replace()")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text_or_path) -> "Wav2Vec2Config":
        import os

        source = "config"
        text = text_or_path
        if isinstance(text_or_path, os.PathLike) or (isinstance(text_or_path, str) and "\n" not in text_or_path
                                                        and os.path.exists(text_or_path)):
            source = str(text_or_path)
            with open(text_or_path, encoding="utf-8") as f:
                text = f.read()
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: not valid YAML: {e}") from e
        return cls.from_dict(d or {}, source=source)
