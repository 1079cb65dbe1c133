"""Model footprint: parameters, megabytes at fp32 / int8 and MACs per second of audio, by block.

    fp = footprint(model_or_config, seconds=1.0)
    print(fp.format_table())           # or fp.to_dict() for JSON

Blocks (by parameter name)
    feature_extractor   CNN front end: conv kernels (+ biases) and their norms
    feature_projection  LayerNorm + Linear, conv channels -> embed_dim
    pos_conv            convolutional positional embedding (weight-normed grouped conv)
    transformer         ``encoder.layers`` + ``encoder.layer_norm``
    ctc_head            Linear, embed_dim -> vocabulary
    mask_emb            fine-tuning time-mask embedding (a parameter; no compute at inference)

Parameters
    Distinct tensors, as :func:`asrc.models.num_parameters` counts them: a kernel shared by
    several conv layers (``conv_share``) counts once, so does a transformer layer applied
    ``layer_reuse`` times. The block rows sum to ``num_parameters(model)`` exactly.

Bytes (:func:`size_bytes`; MB = 10^6 bytes, as in the Shrinking Bigfoot paper), following the
modes of :mod:`asrc.quant`; scales and zero points (a few bytes per row or tensor) not counted
    ``fp32``              4 bytes per parameter.
    ``int8``              asrc.quant ``dynamic`` (as in Shrinking Bigfoot): every ``nn.Linear``
                          weight 1 byte per element; biases, convolutions, norms, pos_conv and
                          mask_emb stay fp32, except that the positional conv's weight norm is
                          folded into one kernel (``weight_g`` disappears).
    ``int8-static-pos``   asrc.quant ``static-pos`` (what the recipes use): ``int8`` plus a
                          1-byte (folded) positional-conv kernel; its bias stays fp32.
    ``int8-static-conv``  asrc.quant ``static-conv``: ``int8-static-pos`` plus 1-byte kernels for
                          CNN layers 2..N; conv biases stay fp32.

MACs (multiply-accumulates) for one clip of ``seconds`` of 16 kHz audio (``samples =
round(16000 * seconds)``, ``T`` frames after the front end, ``D`` embed_dim, ``F`` ffn_dim),
reported per second of audio (clip MACs / seconds)
    conv layer          frames_out * out_channels * (in_channels / groups) * kernel
    feature_projection  T * conv_dim * D
    pos_conv            T_pos * D * (D / pos_conv_groups) * K, with ``T_pos = T + 2 * (K // 2) - K + 1``:
                        the "same"-padded conv computes one extra frame for even K (then dropped)
    transformer         per layer application (num_layers * layer_reuse of them), with
                        ``A = heads * head_dim`` (= D unless heads were pruned) and ``F`` that
                        layer's feed-forward width (``layer_num_heads`` / ``layer_ffn_dims``):
                        4 * T * D * A (q, k, v, out projections) + 2 * T^2 * A (Q K^T and A V)
                        + 2 * T * D * F (feed-forward)
    ctc_head            T * D * vocab_size
    Not counted: biases, norms, activations, softmax, residual additions, the weight-norm
    recomputation of pos_conv. Attention is quadratic in ``T``, so MACs per second grow with the
    clip: the convention is 1 s (16000 samples, 49 frames for the base front end) unless
    ``seconds`` says otherwise. torch's ``FlopCounterMode`` reports exactly 2 x these MACs.
"""

from dataclasses import asdict, dataclass
from typing import Dict, List, Union

import torch
from torch import nn

from asrc.core.constants import SAMPLE_RATE
from asrc.models.config import Wav2Vec2Config
from asrc.models.wav2vec2 import Wav2Vec2CTC, conv_layer_groups

DTYPES = ("fp32", "int8", "int8-static-pos", "int8-static-conv")
MB = 1_000_000
# Parameter-name prefixes of each block, in table order.
BLOCKS = (
    ("feature_extractor", ("feature_extractor.",)),
    ("feature_projection", ("feature_projection.",)),
    ("pos_conv", ("encoder.pos_conv.",)),
    ("transformer", ("encoder.layers.", "encoder.layer_norm.")),
    ("ctc_head", ("ctc_head.",)),
    ("mask_emb", ("mask_emb",)),
)


@dataclass
class BlockFootprint:
    """One row: ``macs`` are for the whole clip; :meth:`Footprint.macs_per_second` divides."""

    name: str
    params: int
    fp32_bytes: int
    int8_bytes: int
    int8_static_pos_bytes: int
    int8_static_conv_bytes: int
    macs: int


@dataclass
class Footprint:
    """Footprint of one architecture for a clip of ``seconds`` (``samples`` -> ``frames``)."""

    blocks: List[BlockFootprint]
    seconds: float
    samples: int
    frames: int

    @property
    def total(self) -> BlockFootprint:
        return BlockFootprint("total", *(sum(getattr(b, f) for b in self.blocks)
                                         for f in ("params", "fp32_bytes", "int8_bytes", "int8_static_pos_bytes",
                                                   "int8_static_conv_bytes",
                                                   "macs")))

    def block(self, name: str) -> BlockFootprint:
        for b in self.blocks + [self.total]:
            if b.name == name:
                return b
        raise KeyError(f"no block {name!r}; blocks: {[b.name for b in self.blocks]} and 'total'")

    def macs_per_second(self, name: str = "total") -> float:
        return self.block(name).macs / self.seconds

    def to_dict(self) -> dict:
        def row(b: BlockFootprint) -> dict:
            return {**asdict(b), "fp32_mb": b.fp32_bytes / MB, "int8_mb": b.int8_bytes / MB,
                    "int8_static_pos_mb": b.int8_static_pos_bytes / MB,
                    "int8_static_conv_mb": b.int8_static_conv_bytes / MB, "macs_per_second": b.macs / self.seconds}

        return {"seconds": self.seconds, "samples": self.samples, "frames": self.frames,
                "sample_rate": SAMPLE_RATE, "blocks": [row(b) for b in self.blocks], "total": row(self.total)}

    def format_table(self, markdown: bool = True) -> str:
        """The table as markdown (default) or aligned plain text, with a one-line legend."""
        header = ["block", "params", "fp32 MB", "int8 MB", "int8+pos MB", "int8+conv MB", "GMACs/s"]
        rows = [[b.name, f"{b.params:,}", f"{b.fp32_bytes / MB:.2f}", f"{b.int8_bytes / MB:.2f}",
                 f"{b.int8_static_pos_bytes / MB:.2f}", f"{b.int8_static_conv_bytes / MB:.2f}", f"{b.macs / self.seconds / 1e9:.3f}"]
                for b in self.blocks + [self.total]]
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]

        def line(cells, sep):
            padded = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
            return f"| {' | '.join(padded)} |" if sep else "  ".join(padded)

        if markdown:
            rule = "|" + "|".join([":" + "-" * (widths[0] + 1)] + ["-" * (w + 1) + ":" for w in widths[1:]]) + "|"
        else:
            rule = "  ".join("-" * w for w in widths)
        out = [line(header, markdown), rule]
        out += [line(r, markdown) for r in rows]
        legend = (f"GMACs per second of audio, for a {self.seconds:g} s clip ({self.samples} samples at 16 kHz, "
                  f"{self.frames} frames). MB = 10^6 bytes. int8: Linear weights 1 byte, the rest fp32 "
                  f"(asrc.quant dynamic); int8+pos: also the positional conv kernel (static-pos, the recipes' "
                  f"mode); int8+conv: also the kernels of CNN layers 2..N (static-conv).")
        return "\n".join(out + ["", legend])


def _meta_model(config: Wav2Vec2Config) -> Wav2Vec2CTC:
    """The real module on the meta device: exact shapes and sharing, no memory.

    (The first random init on the meta device imports torch._dynamo: a one-time second or two.)
    """
    with torch.device("meta"):
        return Wav2Vec2CTC(config)


def _block_of(name: str) -> str:
    for block, prefixes in BLOCKS:
        if name.startswith(prefixes):
            return block
    raise ValueError(f"parameter {name!r} belongs to no footprint block {[b for b, _ in BLOCKS]}; "
                     f"extend asrc.models.footprint.BLOCKS")


def _param_bytes(model: nn.Module) -> Dict[str, Dict[str, int]]:
    """Distinct parameter name -> bytes per dtype."""
    linear = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    convs = {id(b.conv.weight) for b in model.feature_extractor.conv_layers[1:]}
    out = {}
    for name, p in model.named_parameters():
        n = p.numel()
        if name == "encoder.pos_conv.weight_g":  # folded into the kernel
            int8 = static_pos = static_conv = 0
        else:
            int8 = n if id(p) in linear else 4 * n
            static_pos = n if name == "encoder.pos_conv.weight_v" else int8
            static_conv = n if id(p) in convs else static_pos
        out[name] = {"fp32": 4 * n, "int8": int8, "int8-static-pos": static_pos, "int8-static-conv": static_conv}
    return out


def size_bytes(model: nn.Module, dtype: str = "fp32") -> int:
    """Bytes of the distinct parameters of ``model`` stored as ``dtype`` (module docstring)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {DTYPES}")
    return sum(b[dtype] for b in _param_bytes(model).values())


def num_frames(config: Wav2Vec2Config, samples: int) -> int:
    """Frames the front end makes of ``samples`` samples."""
    if samples < config.receptive_field:
        raise ValueError(f"{samples} samples is shorter than the receptive field ({config.receptive_field})")
    for _, k, s in config.conv_layers:
        samples = (samples - k) // s + 1
    return samples


def macs(config: Wav2Vec2Config, samples: int) -> Dict[str, int]:
    """MACs per block for one clip of ``samples`` samples (formulas in the module docstring)."""
    t = num_frames(config, samples)
    conv, length, in_ch = 0, samples, 1
    for (out_ch, k, s), g in zip(config.conv_layers, conv_layer_groups(config)):
        length = (length - k) // s + 1
        conv += length * out_ch * (in_ch // g) * k
        in_ch = out_ch
    d, kp = config.embed_dim, config.pos_conv_kernel
    t_pos = t + 2 * (kp // 2) - kp + 1
    transformer = 0
    for i in range(config.num_layers):
        a = config.heads(i) * config.head_dim
        transformer += 4 * t * d * a + 2 * t * t * a + 2 * t * d * config.ffn_width(i)
    return {
        "feature_extractor": conv,
        "feature_projection": t * config.conv_dim * d,
        "pos_conv": t_pos * d * (d // config.pos_conv_groups) * kp,
        "transformer": config.layer_reuse * transformer,
        "ctc_head": t * d * config.vocab_size,
        "mask_emb": 0,
    }


def footprint(model: Union[Wav2Vec2CTC, Wav2Vec2Config], seconds: float = 1.0) -> Footprint:
    """Parameters, bytes and MACs by block for a model (or a config: no weights needed)."""
    if isinstance(model, Wav2Vec2Config):
        model = _meta_model(model)
    samples = int(round(seconds * SAMPLE_RATE))
    config = model.config
    counts = {name: [0] * (1 + len(DTYPES)) for name, _ in BLOCKS}
    sizes = _param_bytes(model)
    for name, p in model.named_parameters():
        row = counts[_block_of(name)]
        row[0] += p.numel()
        for i, dtype in enumerate(DTYPES, start=1):
            row[i] += sizes[name][dtype]
    block_macs = macs(config, samples)
    blocks = [BlockFootprint(name, *counts[name], block_macs[name]) for name, _ in BLOCKS]
    return Footprint(blocks, seconds=samples / SAMPLE_RATE, samples=samples, frames=num_frames(config, samples))
