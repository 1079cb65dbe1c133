"""wav2vec 2.0 encoder with a CTC head, written for compression.

Layout (parameter names follow fairseq's where a module exists there, which keeps checkpoint
import a table of renames):

    Wav2Vec2CTC
      feature_extractor.conv_layers[i].{conv, norm}     CNN front end, 320x down-sampling (base)
      feature_projection.{layer_norm, projection}       conv channels -> embed_dim
      encoder.pos_conv.{weight_g, weight_v, bias}       weight-normed grouped conv positional embedding
      encoder.layer_norm                                after pos_conv (post-LN) or at the end (pre-LN)
      encoder.layers[i].{self_attn.{q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm}
      mask_emb                                          fine-tuning time-mask embedding
      ctc_head                                          embed_dim -> vocab_size

Padding is handled with masks all the way: the group norm of the first conv layer takes its
statistics over valid frames only, padded frames are zeroed before the positional conv, and
attention ignores them, so a padded batch gives each utterance the logits it gets alone.

Inference fast path: in eval mode without autograd, on CPU in float32, the transformer layers
run their feed-forward input projection and GELU as one oneDNN call (bias and activation in
the GEMM's epilogue), fold the output biases and the residual additions into the GEMMs
(``addmm``), and the CNN applies GELU in place (a forward hook on a front-end conv sees its
output overwritten by GELU afterwards: keep a copy). Same arithmetic up to float rounding (a
test holds it to 1e-5 of the plain path); it is what makes asrc faster than transformers'
Wav2Vec2ForCTC on the same weights (``asrc-bench model-speed``). int8 models have their own
(:mod:`asrc.models.int8`, :mod:`asrc.models.int8_cnn`): the CNN as one chain of oneDNN int8
products, the positional conv as oneDNN int8 products over strided windows, and transformer
layers whose q, k and v share one quantization of their input, with the residual sums and
fc1's GELU inside the int8 kernels. It is off while tracing or exporting (portable graphs), and
with ``ASRC_FAST_PATH=0`` or inside :func:`plain_ops`.
"""

import contextlib
import math
import os
from typing import List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asrc.models.config import Wav2Vec2Config
from asrc.models.int8_cnn import hooked, int8_chain


_FAST_PATH = {"enabled": os.environ.get("ASRC_FAST_PATH", "1") != "0"}
# Raised whenever the fast path's numbers change (2: int8 models through oneDNN, asrc.models.int8_cnn;
# 3: the int8 positional conv through oneDNN, asrc.models.int8; 4: the int8 CNN's first-layer
# statistics in float32 from centred windows; 5: int8 models decode a batch one utterance at a time)
FAST_PATH_VERSION = 5


def inference_path() -> str:
    """Which computation inference runs now (part of what a decode's result depends on)."""
    return f"fast-v{FAST_PATH_VERSION}" if _FAST_PATH["enabled"] else "plain"


# oneDNN's fused linear (+ activation) kernel, the one torch.compile's CPU backend uses.
_LINEAR_POINTWISE = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None) \
    if torch.backends.mkldnn.is_available() else None


@contextlib.contextmanager
def plain_ops():
    """Within this block the inference fast path (module doc) is off: plain PyTorch ops only."""
    before = _FAST_PATH["enabled"]
    _FAST_PATH["enabled"] = False
    try:
        yield
    finally:
        _FAST_PATH["enabled"] = before


def _exporting() -> bool:
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling())


def _inference_fast_path(module: nn.Module, x: Tensor) -> bool:
    """Whether ``module`` may take its eval-only fast path for input ``x``."""
    return (_FAST_PATH["enabled"] and not module.training and not torch.is_grad_enabled()
            and x.device.type == "cpu" and x.dtype == torch.float32 and not _exporting())


class EncoderOutput(NamedTuple):
    """What :meth:`Wav2Vec2CTC.encode` returns.

    x: ``[batch, frame, embed_dim]`` last hidden state (input of the CTC head).
    lengths: ``[batch]`` valid frames per utterance.
    hidden_states: ``num_layers * layer_reuse + 1`` tensors ``[batch, frame, embed_dim]``:
        the input of the first transformer layer, then the output of every layer application;
        None unless asked for.
    features: ``[batch, frame, conv_dim]`` CNN output before the feature projection; None unless asked for.
    padding_mask: ``[batch, frame]`` True on padded frames; None when nothing is padded.
    """

    x: Tensor
    lengths: Tensor
    hidden_states: Optional[List[Tensor]]
    features: Optional[Tensor]
    padding_mask: Optional[Tensor]


def lengths_to_padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """``[batch]`` lengths -> ``[batch, max_len]`` bool mask, True on padding."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


class MaskedChannelNorm(nn.Module):
    """Per-channel normalisation over time (GroupNorm with one group per channel).

    Statistics are taken over valid frames only, so padding does not change the result.
    """

    per_channel_over_time = True  # what asrc.models.int8_cnn folds into the first conv

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        """x: ``[batch, channel, frame]``; padding_mask: ``[batch, frame]`` True on padding."""
        if padding_mask is None:
            return F.group_norm(x, x.shape[1], self.weight, self.bias, self.eps)
        valid = (~padding_mask).unsqueeze(1).to(x.dtype)
        count = valid.sum(-1, keepdim=True).clamp(min=1.0)
        mean = (x * valid).sum(-1, keepdim=True) / count
        var = (((x - mean) * valid) ** 2).sum(-1, keepdim=True) / count
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[None, :, None] + self.bias[None, :, None]


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a ``[batch, channel, frame]`` tensor."""

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvBlock(nn.Module):
    """Conv1d (no padding) -> optional norm -> GELU."""

    def __init__(self, in_channels, out_channels, kernel, stride, bias, groups, norm: Optional[nn.Module]):
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, bias=bias, groups=groups)
        self.norm = norm

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return torch.div(lengths - self.kernel, self.stride, rounding_mode="floor") + 1

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None) -> Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, padding_mask)
        if _inference_fast_path(self, x):
            # in place: no fresh buffer for the largest activations of the model (page faults)
            return torch.ops.aten.gelu_(x)
        return F.gelu(x)


def conv_layer_groups(config: Wav2Vec2Config) -> List[int]:
    """Groups of every conv layer: ``conv_groups`` wherever both channel counts divide."""
    groups, in_ch = [], 1
    for out_ch, _, _ in config.conv_layers:
        g = config.conv_groups
        groups.append(g if g > 1 and in_ch % g == 0 and out_ch % g == 0 else 1)
        in_ch = out_ch
    return groups


class ConvFeatureExtractor(nn.Module):
    """Raw waveform ``[batch, sample]`` -> features ``[batch, channel, frame]``."""

    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        layers, in_ch = [], 1
        for i, ((out_ch, k, s), g) in enumerate(zip(config.conv_layers, conv_layer_groups(config))):
            if config.extractor_mode == "layer_norm":
                norm = ChannelLayerNorm(out_ch, eps=config.layer_norm_eps)
            elif i == 0:
                norm = MaskedChannelNorm(out_ch, eps=config.layer_norm_eps)
            else:
                norm = None
            layers.append(ConvBlock(in_ch, out_ch, k, s, config.conv_bias, g, norm))
            in_ch = out_ch
        self.conv_layers = nn.ModuleList(layers)
        if config.conv_share:
            self._share_kernels()

    def _share_kernels(self):
        """Tie the weights (and biases) of conv layers with identical parameter shapes."""
        first = {}
        for block in self.conv_layers:
            conv = block.conv
            key = (tuple(conv.weight.shape), conv.groups, conv.bias is not None)
            if key in first:
                conv.weight = first[key].weight
                if conv.bias is not None:
                    conv.bias = first[key].bias
            else:
                first[key] = conv

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for block in self.conv_layers:
            lengths = block.output_lengths(lengths)
        return lengths

    def forward(self, wav: Tensor, lengths: Optional[Tensor] = None):
        """Returns features ``[batch, channel, frame]`` and their lengths (None if not given)."""
        if _inference_fast_path(self, wav):
            chain = int8_chain(self)  # an int8 model's CNN as one int8 chain (asrc.models.int8_cnn)
            if chain is not None:
                return chain(wav, lengths), (None if lengths is None else self.output_lengths(lengths))
        x = wav.unsqueeze(1)
        for block in self.conv_layers:
            padding_mask = None
            if lengths is not None:
                lengths = block.output_lengths(lengths)
                frames = (x.shape[-1] - block.kernel) // block.stride + 1
                if isinstance(block.norm, MaskedChannelNorm) and bool((lengths < frames).any()):
                    padding_mask = lengths_to_padding_mask(lengths, frames)
            x = block(x, padding_mask)
        return x, lengths


class FeatureProjection(nn.Module):
    def __init__(self, conv_dim: int, embed_dim: int, dropout: float, eps: float):
        super().__init__()
        self.layer_norm = nn.LayerNorm(conv_dim, eps=eps)
        self.projection = nn.Linear(conv_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Tensor) -> Tensor:
        """features ``[batch, frame, conv_dim]`` -> ``[batch, frame, embed_dim]``."""
        return self.dropout(self.projection(self.layer_norm(features)))


class PositionalConv(nn.Module):
    """Grouped conv over time with weight normalisation (dim 2), "same" length, GELU.

    The weight is ``weight_g * weight_v / ||weight_v||`` with the norm over dims 0 and 1 per
    kernel position, computed here rather than through torch's parametrisation so that the
    module stays plain for quantisation, TorchScript and ONNX export.
    """

    def __init__(self, embed_dim: int, kernel: int, groups: int):
        super().__init__()
        self.kernel = kernel
        self.groups = groups
        self.weight_v = nn.Parameter(torch.empty(embed_dim, embed_dim // groups, kernel))
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel))
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        std = math.sqrt(4.0 / (kernel * embed_dim))
        nn.init.normal_(self.weight_v, mean=0.0, std=std)
        with torch.no_grad():
            self.weight_g.copy_(self.weight_v.norm(dim=(0, 1), keepdim=True))

    def weight(self) -> Tensor:
        # torch's fused g * v / ||v|| (the kernel torch.nn.utils.weight_norm uses): ~6x faster
        # than composing norm/mul/div for the base model's 768x48x128 kernel.
        return torch._weight_norm(self.weight_v, self.weight_g, 2)

    def forward(self, x: Tensor) -> Tensor:
        """x ``[batch, frame, embed_dim]`` -> same shape."""
        # The kernel is recomputed every call, never cached: writes through ``.data`` (EMA, user
        # code) do not bump the version counter a cache could key on, and caching saves ~0.3 %.
        y = F.conv1d(x.transpose(1, 2), self.weight(), self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``num_heads * head_dim`` may be smaller than ``embed_dim``
    (a layer with pruned heads); ``head_dim`` defaults to ``embed_dim // num_heads``."""

    #: dtype of the attention products (:meth:`products`); None: the input's. Set on int8 models
    #: by :func:`asrc.models.quantized.set_attention_dtype`.
    compute_dtype: Optional[torch.dtype] = None

    def __init__(self, embed_dim: int, num_heads: int, dropout: float, head_dim: Optional[int] = None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads if head_dim is None else head_dim
        self.dropout = dropout
        inner = num_heads * self.head_dim
        self.q_proj = nn.Linear(embed_dim, inner)
        self.k_proj = nn.Linear(embed_dim, inner)
        self.v_proj = nn.Linear(embed_dim, inner)
        self.out_proj = nn.Linear(inner, embed_dim)

    def attend(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
        """Everything but the output projection: ``[batch, frame, num_heads * head_dim]``, heads concatenated."""
        b, t, _ = x.shape
        d = self.num_heads * self.head_dim

        def heads(y: Tensor) -> Tensor:
            return y.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

        y = self.products(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)), attn_mask,
                          self.dropout if self.training else 0.0)
        return y.transpose(1, 2).reshape(b, t, d)

    def products(self, q: Tensor, k: Tensor, v: Tensor, attn_mask: Optional[Tensor], dropout_p: float = 0.0) -> Tensor:
        """``softmax(q k^T / sqrt(d)) v`` per head, in :attr:`compute_dtype` when one is set (an int8
        model quantized with ``attention_dtype: bfloat16``), returned in ``q``'s dtype."""
        if self.compute_dtype is None or q.dtype == self.compute_dtype:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
        dt = self.compute_dtype
        return F.scaled_dot_product_attention(q.to(dt), k.to(dt), v.to(dt), attn_mask=attn_mask,
                                              dropout_p=dropout_p).to(q.dtype)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
        """x ``[batch, frame, embed_dim]``; attn_mask ``[batch, 1, 1, frame]`` True where attended."""
        return self.out_proj(self.attend(x, attn_mask))


class TransformerLayer(nn.Module):
    """One transformer layer; layer ``index`` of a heterogeneous config may lack its attention
    (0 heads) or feed-forward (width 0) sub-layer. The residual stream then passes it unchanged;
    the post-LN layout keeps that sub-layer's LayerNorm (it normalises the residual sum), the
    pre-LN layout drops it (it only fed the missing sub-layer)."""

    def __init__(self, config: Wav2Vec2Config, index: int = 0):
        super().__init__()
        d, eps = config.embed_dim, config.layer_norm_eps
        heads, ffn = config.heads(index), config.ffn_width(index)
        self.layer_norm_first = config.layer_norm_first
        keep_norms = not config.layer_norm_first
        self.self_attn = SelfAttention(d, heads, config.attention_dropout, config.head_dim) if heads else None
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps) if heads or keep_norms else None
        self.fc1 = nn.Linear(d, ffn) if ffn else None
        self.fc2 = nn.Linear(ffn, d) if ffn else None
        self.final_layer_norm = nn.LayerNorm(d, eps=eps) if ffn or keep_norms else None
        self.dropout = nn.Dropout(config.dropout)
        self.activation_dropout = nn.Dropout(config.activation_dropout)

    def _ffn(self, x: Tensor) -> Tensor:
        # an int8 Linear with the GELU in its kernel (called directly: not while a hook watches fc1)
        fc1_gelu = getattr(self.fc1, "forward_gelu", None)
        if fc1_gelu is not None and hooked(self.fc1):
            fc1_gelu = None
        h = fc1_gelu(x) if fc1_gelu is not None else F.gelu(self.fc1(x))
        return self.dropout(self.fc2(self.activation_dropout(h)))

    def _fast_path_ok(self, x: Tensor) -> bool:
        return (_LINEAR_POINTWISE is not None and self.self_attn is not None and self.fc1 is not None
                and _inference_fast_path(self, x)
                and type(self.fc1) is nn.Linear and type(self.fc2) is nn.Linear  # not quantized
                and type(self.self_attn.out_proj) is nn.Linear
                and all(m.bias is not None for m in (self.fc1, self.fc2, self.self_attn.out_proj)))

    @staticmethod
    def _residual_linear(residual: Tensor, x: Tensor, linear: nn.Linear) -> Tensor:
        """``residual + linear(x)`` as one GEMM that accumulates onto ``residual + bias``."""
        return torch.addmm(residual + linear.bias, x, linear.weight.t())

    def _forward_fast(self, x: Tensor, attn_mask: Optional[Tensor]) -> Tensor:
        """:meth:`forward` in eval mode without autograd (see the module doc)."""
        b, t, d = x.shape
        attn = self.self_attn
        x = x.reshape(b * t, d)

        def attention(y: Tensor) -> Tensor:
            heads = attn.attend(y.view(b, t, d), attn_mask)
            return self._residual_linear(x, heads.reshape(b * t, heads.shape[-1]), attn.out_proj)

        def ffn(y: Tensor, residual: Tensor) -> Tensor:
            h = _LINEAR_POINTWISE(y, self.fc1.weight, self.fc1.bias, "gelu", [], "none")
            return self._residual_linear(residual, h, self.fc2)

        if self.layer_norm_first:
            x = attention(self.self_attn_layer_norm(x))
            return ffn(self.final_layer_norm(x), x).view(b, t, d)
        x = self.self_attn_layer_norm(attention(x))
        return self.final_layer_norm(ffn(x, x)).view(b, t, d)

    def _int8_path_ok(self, x: Tensor) -> bool:
        if self.self_attn is None or self.fc1 is None:
            return False
        attn = self.self_attn
        return all(getattr(m, "int8_fast", None) is not None and m.int8_fast(x)
                   for m in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj, self.fc1, self.fc2)) \
            and not hooked(self)  # the int8 kernels are called directly: a hook on a linear would not fire

    def _forward_int8(self, x: Tensor, attn_mask: Optional[Tensor]) -> Tensor:
        """:meth:`forward` of a layer whose linears are int8 (:class:`asrc.models.int8.DynamicInt8Linear`)
        on their fast path: q, k and v share one quantization of their input, and the residual
        sums and fc1's GELU are computed inside the int8 kernels."""
        b, t, d = x.shape
        attn = self.self_attn
        quantize = attn.q_proj.quantize_input
        x = x.reshape(b * t, d)

        def heads(linear, codes) -> Tensor:
            return linear.forward_codes(codes).view(b, t, attn.num_heads, attn.head_dim).transpose(1, 2)

        def attention(y: Tensor, residual: Tensor) -> Tensor:
            codes = quantize(y)
            h = attn.products(heads(attn.q_proj, codes), heads(attn.k_proj, codes), heads(attn.v_proj, codes),
                              attn_mask)
            h = h.transpose(1, 2).reshape(b * t, attn.num_heads * attn.head_dim)
            return attn.out_proj.forward_codes(quantize(h), residual=residual)

        def ffn(y: Tensor, residual: Tensor) -> Tensor:
            h = self.fc1.forward_codes(quantize(y), "gelu")
            return self.fc2.forward_codes(quantize(h), residual=residual)

        if self.layer_norm_first:
            x = attention(self.self_attn_layer_norm(x), x)
            return ffn(self.final_layer_norm(x), x).view(b, t, d)
        x = self.self_attn_layer_norm(attention(x, x))
        return self.final_layer_norm(ffn(x, x)).view(b, t, d)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> Tensor:
        if self._fast_path_ok(x):
            return self._forward_fast(x, attn_mask)
        if self._int8_path_ok(x):
            return self._forward_int8(x, attn_mask)
        if self.layer_norm_first:
            if self.self_attn is not None:
                x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), attn_mask))
            if self.fc1 is not None:
                x = x + self._ffn(self.final_layer_norm(x))
            return x
        if self.self_attn is not None:
            x = x + self.dropout(self.self_attn(x, attn_mask))
        x = self.self_attn_layer_norm(x)
        if self.fc1 is not None:
            x = x + self._ffn(x)
        return self.final_layer_norm(x)


class TransformerEncoder(nn.Module):
    def __init__(self, config: Wav2Vec2Config):
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.layer_reuse = config.layer_reuse
        self.layer_drop = config.layer_drop
        self.pos_conv = PositionalConv(config.embed_dim, config.pos_conv_kernel, config.pos_conv_groups)
        self.layer_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(TransformerLayer(config, i) for i in range(config.num_layers))

    def forward(self, x: Tensor, padding_mask: Optional[Tensor] = None, output_hidden_states: bool = False):
        """x ``[batch, frame, embed_dim]`` -> (x, hidden states or None)."""
        attn_mask = None
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
            attn_mask = (~padding_mask)[:, None, None, :]
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        hidden = [x] if output_hidden_states else None
        for layer in self.layers:
            for _ in range(self.layer_reuse):
                # LayerDrop (Fan et al., 2019): skip whole layers while training.
                if not (self.training and self.layer_drop > 0 and torch.rand(()) < self.layer_drop):
                    x = layer(x, attn_mask)
                if hidden is not None:
                    hidden.append(x)
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x, hidden


def span_mask(shape, lengths: Optional[Tensor], prob: float, span: int, device) -> Tensor:
    """Random spans covering about ``prob`` of each row's valid positions; ``[batch, size]`` bool."""
    b, size = shape
    mask = torch.zeros(b, size, dtype=torch.bool, device=device)
    valid = lengths.tolist() if lengths is not None else [size] * b
    for i, n in enumerate(valid):
        if n <= span:
            continue
        num = int(prob * n / span + torch.rand(()).item())
        if num == 0:
            continue
        starts = torch.randint(0, n - span + 1, (num,), device=device)
        idx = (starts[:, None] + torch.arange(span, device=device)[None, :]).reshape(-1)
        mask[i, idx] = True
    return mask


class Wav2Vec2CTC(nn.Module):
    """wav2vec 2.0 encoder + CTC head.

    ``forward(wav, lengths)`` takes float32 16 kHz audio ``[batch, sample]`` and valid sample
    counts ``[batch]`` and returns ``(logits [batch, frame, vocab], out_lengths [batch])``.
    """

    def __init__(self, config: Wav2Vec2Config, tokens: Optional[List[str]] = None):
        super().__init__()
        if tokens is not None and len(tokens) != config.vocab_size:
            raise ValueError(f"{len(tokens)} tokens given for vocab_size={config.vocab_size}")
        self.config = config
        self.tokens = list(tokens) if tokens is not None else None
        self.feature_extractor = ConvFeatureExtractor(config)
        self.feature_projection = FeatureProjection(
            config.conv_dim, config.embed_dim, config.feature_dropout, config.layer_norm_eps)
        self.encoder = TransformerEncoder(config)
        self.mask_emb = nn.Parameter(torch.empty(config.embed_dim).uniform_())
        self.final_dropout = nn.Dropout(config.final_dropout)
        self.ctc_head = nn.Linear(config.embed_dim, config.vocab_size)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames produced for ``lengths`` samples (0 below the receptive field)."""
        return self.feature_extractor.output_lengths(lengths).clamp(min=0)

    def _check_input(self, wav: Tensor, lengths: Optional[Tensor]):
        if wav.dim() != 2:
            raise ValueError(f"wav must be [batch, sample], got shape {tuple(wav.shape)}")
        if not wav.is_floating_point():
            raise ValueError(f"wav must be float audio in [-1, 1], got {wav.dtype} (16-bit samples: "
                             f"wav.float() / 32768)")
        if not torch.jit.is_tracing() and not wav.is_meta:
            bad = int((~torch.isfinite(wav)).sum())
            if bad:
                raise ValueError(f"wav has {bad} non-finite samples (NaN/Inf); the model would output NaN "
                                 f"(or, in int8, numbers that look plausible)")
        rf = self.config.receptive_field
        if lengths is None:
            if wav.shape[1] < rf:
                raise ValueError(f"wav has {wav.shape[1]} samples; the front end needs at least {rf}")
            return
        if lengths.shape != (wav.shape[0],):
            raise ValueError(f"lengths must be [batch]={wav.shape[0]}, got shape {tuple(lengths.shape)}")
        if not torch.jit.is_tracing():
            short = (lengths < rf).nonzero().flatten().tolist()
            if short:
                raise ValueError(f"utterances {short} of the batch have fewer than {rf} samples "
                                 f"(lengths {lengths[short].tolist()}); the front end needs {rf}")
            if int(lengths.max()) > wav.shape[1]:
                raise ValueError(f"lengths {lengths.tolist()} exceed the padded length {wav.shape[1]}")

    def normalize(self, wav: Tensor, lengths: Optional[Tensor]) -> Tensor:
        """Zero mean, unit variance per utterance over its valid samples; padding stays 0."""
        if lengths is None:
            return F.layer_norm(wav, wav.shape[-1:], eps=1e-5)
        valid = (~lengths_to_padding_mask(lengths, wav.shape[1])).to(wav.dtype)
        n = lengths.to(wav.dtype).unsqueeze(1)
        mean = (wav * valid).sum(1, keepdim=True) / n
        var = (((wav - mean) * valid) ** 2).sum(1, keepdim=True) / n
        return (wav - mean) * torch.rsqrt(var + 1e-5) * valid

    def encode(self, wav: Tensor, lengths: Optional[Tensor] = None, *, output_hidden_states: bool = False,
               return_features: bool = False, apply_mask: bool = False) -> EncoderOutput:
        """Run everything but the CTC head. ``apply_mask`` applies the fine-tuning masks (training only).
        Float64 audio (numpy's default) is taken in the model's float type."""
        self._check_input(wav, lengths)
        if wav.dtype == torch.float64:
            wav = wav.to(self.feature_extractor.conv_layers[0].conv.weight.dtype)
        if self.config.normalize_waveform:
            wav = self.normalize(wav, lengths)
        features, out_lengths = self.feature_extractor(wav, lengths)
        features = features.transpose(1, 2)
        b, t, _ = features.shape
        padding_mask = None
        if out_lengths is None:
            out_lengths = torch.full((b,), t, dtype=torch.long, device=wav.device)
        elif torch.jit.is_tracing() or bool((out_lengths < t).any()):
            padding_mask = lengths_to_padding_mask(out_lengths, t)
        x = self.feature_projection(features)
        if apply_mask and self.training:
            x = self._apply_masks(x, out_lengths if padding_mask is not None else None)
        x, hidden = self.encoder(x, padding_mask, output_hidden_states)
        return EncoderOutput(x, out_lengths, hidden, features if return_features else None, padding_mask)

    def _apply_masks(self, x: Tensor, lengths: Optional[Tensor]) -> Tensor:
        c = self.config
        if c.mask_time_prob > 0:
            m = span_mask(x.shape[:2], lengths, c.mask_time_prob, c.mask_time_length, x.device)
            x = torch.where(m.unsqueeze(-1), self.mask_emb.to(x.dtype), x)
        if c.mask_channel_prob > 0:
            m = span_mask((x.shape[0], x.shape[2]), None, c.mask_channel_prob, c.mask_channel_length, x.device)
            x = x.masked_fill(m.unsqueeze(1), 0.0)
        return x

    def forward(self, wav: Tensor, lengths: Optional[Tensor] = None, output_hidden_states: bool = False):
        """Returns ``(logits, out_lengths)``, plus the hidden states when asked for.

        A model with dynamically quantized int8 layers (:mod:`asrc.models.quantized`) runs a
        batch one utterance at a time, each at its own length: their activations are quantized
        with a scale taken from the tensor at hand, so the other utterances and the padding of a
        batch would change every utterance's numbers (by up to a third of a logit, measured on
        the AN4 teacher); one at a time, an utterance gets the same logits in any batch. This is
        part of the inference fast path (module doc): :func:`plain_ops` and training compute the
        batch whole; TorchScript exports loop over the batch as here
        (:class:`asrc.quant.export.EachUtterance`), ONNX exports compute it whole (onnxruntime's
        dynamic quantization takes one scale per call: feed them one utterance at a time)."""
        if (wav.dim() == 2 and wav.shape[0] > 1 and not output_hidden_states and _inference_fast_path(self, wav)
                and has_dynamic_int8(self)):
            return self.forward_each(wav, lengths)
        out = self.encode(wav, lengths, output_hidden_states=output_hidden_states)
        logits = self.ctc_head(self.final_dropout(out.x))
        if output_hidden_states:
            return logits, out.lengths, out.hidden_states
        return logits, out.lengths


    def forward_each(self, wav: Tensor, lengths: Optional[Tensor]):
        """:meth:`forward` of each utterance alone; logits padded with zeros to the longest."""
        self._check_input(wav, lengths)
        n = lengths.tolist() if lengths is not None else [wav.shape[1]] * wav.shape[0]
        outs = [self.forward(wav[i:i + 1, :n[i]], None if lengths is None else lengths[i:i + 1])
                for i in range(wav.shape[0])]
        frames = max(int(o[0].shape[1]) for o in outs)
        logits = outs[0][0].new_zeros(wav.shape[0], frames, outs[0][0].shape[2])
        for i, (x, _) in enumerate(outs):
            logits[i, :x.shape[1]] = x[0]
        return logits, torch.cat([o[1] for o in outs])


def has_dynamic_int8(module: nn.Module) -> bool:
    """Whether ``module`` holds Linear layers that quantize their input per call (dynamic int8)."""
    import torch.ao.nn.quantized.dynamic as nnqd

    return any(isinstance(m, nnqd.Linear) for m in module.modules())


def num_parameters(module: nn.Module) -> int:
    """Weights and biases of ``module``: distinct parameters (shared tensors counted once) and
    int8 ones (quantized modules hold packed tensors, not ``nn.Parameter`` s, so
    ``module.parameters()`` misses them)."""
    import torch.ao.nn.quantized as nnq

    total = sum(p.numel() for p in module.parameters())
    for m in module.modules():
        if isinstance(m, (nnq.Conv1d, nnq.Linear)):  # the dynamic Linear is an nnq.Linear too
            b = m.bias()
            total += m.weight().numel() + (b.numel() if b is not None else 0)
    return total
