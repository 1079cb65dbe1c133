"""Masks on the prunable structures of a :class:`Wav2Vec2CTC`, running a model with them, and
materialising a masked model as a smaller dense one.

Structures (the names used in configs and logs, :data:`STRUCTURES`):

``conv``
    output channels of each CNN layer. In a grouped layer (``conv_groups``) and in the layer
    that feeds one, channel ``j`` of every group shares one mask value, so that every group
    keeps the same number of channels and the layers stay grouped convolutions.
``heads``
    attention heads of each transformer layer (the head size never changes).
``ffn``
    feed-forward units of each transformer layer.
``attention_layer`` / ``ffn_layer``
    a whole attention / feed-forward sub-layer (one scalar per layer).
``hidden``
    the width of the residual stream (``embed_dim``), one mask over its dimensions shared by
    every layer (CoFi's hidden-dimension mask, Xia et al. 2022). Dimension ``j`` of every group
    of the positional conv shares one mask value (:func:`hidden_tie`), so that it stays a
    grouped conv; heads keep their size (``attention_head_dim``).

Where a mask value ``m`` multiplies (:func:`apply_masks`), chosen so that every value folds
into a weight of the dense model (:func:`materialise`):

- conv channel of a layer but the last: the block output after GELU (folds into the input
  weights of the next conv);
- conv channel of the last layer: the output of the feature projection's LayerNorm, whose
  statistics are taken over the kept channels only (``m > 0``), as the dense model's LayerNorm
  over fewer channels does (folds into that LayerNorm's weight and bias). With
  ``extractor_mode: layer_norm`` every conv layer's channel LayerNorm also takes its
  statistics over the kept channels;
- head: its slice of the attention output before ``out_proj`` (folds into ``out_proj``'s columns);
- feed-forward unit: its activation before ``fc2`` (folds into ``fc2``'s columns);
- sub-layer: the sub-layer output (folds into ``out_proj`` / ``fc2`` weight and bias). A
  sub-layer with no head / unit left is removed as a whole: otherwise it would still add its
  output bias, which the dense model (0 heads = no attention sub-layer) has no place for.
- hidden dimension: everything written into the residual stream — the feature projection's
  output and every ``out_proj`` / ``fc2`` output (folds into their rows and biases); the
  positional conv reads and writes only the kept dimensions (its output follows a GELU, so it
  is kept unscaled), and every LayerNorm over the stream takes its statistics over the kept
  dimensions only and outputs 0 on the others (as the dense model's narrower LayerNorms do).
  Removed dimensions of the stream thus stay 0 and nothing reads them.

A mask value of exactly 0 removes the unit; any other value keeps it, scaled.
"""

import contextlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import Tensor

from asrc.errors import ConfigError
from asrc.models.config import Wav2Vec2Config
from asrc.models.io import load_state_dict_strict
from asrc.models.wav2vec2 import ChannelLayerNorm, Wav2Vec2CTC, conv_layer_groups, plain_ops

__all__ = ["STRUCTURES", "Masks", "apply_masks", "conv_tie", "hidden_tie", "materialise", "pruned_config"]

STRUCTURES = ("conv", "heads", "ffn", "attention_layer", "ffn_layer", "hidden")


@dataclass
class Masks:
    """Mask values per structure and layer; ``None`` = that structure of that layer is not masked.

    conv[i]: ``[channels of conv layer i]``; heads[j]: ``[heads of layer j]``; ffn[j]:
    ``[ffn width of layer j]``; attention_layer[j], ffn_layer[j]: scalars; hidden: ``[embed_dim]``
    (one for the model) or None.
    """

    conv: List[Optional[Tensor]] = field(default_factory=list)
    heads: List[Optional[Tensor]] = field(default_factory=list)
    ffn: List[Optional[Tensor]] = field(default_factory=list)
    attention_layer: List[Optional[Tensor]] = field(default_factory=list)
    ffn_layer: List[Optional[Tensor]] = field(default_factory=list)
    hidden: Optional[Tensor] = None

    @classmethod
    def none(cls, config: Wav2Vec2Config) -> "Masks":
        n = config.num_layers
        return cls([None] * len(config.conv_layers), [None] * n, [None] * n, [None] * n, [None] * n, None)

    def check(self, config: Wav2Vec2Config) -> None:
        """A :class:`ValueError` naming the first mask whose count or shape does not fit ``config``."""
        n = config.num_layers
        expected = {"conv": [c[0] for c in config.conv_layers], "heads": [config.heads(j) for j in range(n)],
                    "ffn": [config.ffn_width(j) for j in range(n)], "attention_layer": [None] * n,
                    "ffn_layer": [None] * n}
        for name, sizes in expected.items():
            values = getattr(self, name)
            if len(values) != len(sizes):
                raise ValueError(f"masks.{name} has {len(values)} entries for {len(sizes)} layers")
            for i, (m, size) in enumerate(zip(values, sizes)):
                if m is None:
                    continue
                shape = () if size is None else (size,)
                if tuple(m.shape) != shape:
                    raise ValueError(f"masks.{name}[{i}] has shape {tuple(m.shape)}, the layer needs {shape}")
        if self.hidden is not None and tuple(self.hidden.shape) != (config.embed_dim,):
            raise ValueError(f"masks.hidden has shape {tuple(self.hidden.shape)}, the model needs ({config.embed_dim},)")

    def detach(self) -> "Masks":
        def d(v):
            return [None if m is None else m.detach() for m in v]

        return Masks(d(self.conv), d(self.heads), d(self.ffn), d(self.attention_layer), d(self.ffn_layer),
                     None if self.hidden is None else self.hidden.detach())


def conv_tie(config: Wav2Vec2Config) -> List[int]:
    """Per conv layer, how many output channels share one mask value (module doc): the groups of
    the layer, or of the next layer when that one is grouped, else 1."""
    groups = conv_layer_groups(config)
    ties = []
    for i, g in enumerate(groups):
        nxt = groups[i + 1] if i + 1 < len(groups) else 1
        ties.append(max(g, nxt))
    return ties


def hidden_tie(config: Wav2Vec2Config) -> int:
    """How many dimensions of the residual stream share one mask value: the groups of the
    positional conv (dimension ``j`` of every group alike)."""
    return config.pos_conv_groups


def _masked_layer_norm(x: Tensor, keep: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """LayerNorm over the last dim with statistics over the ``keep`` positions only; 0 elsewhere."""
    k = keep.to(x.dtype)
    count = k.sum().clamp(min=1.0)
    mean = (x * k).sum(-1, keepdim=True) / count
    var = (((x - mean) * k) ** 2).sum(-1, keepdim=True) / count
    return ((x - mean) * torch.rsqrt(var + eps) * weight + bias) * k


def _any_kept(m: Optional[Tensor]) -> Optional[Tensor]:
    return None if m is None else (m != 0).any().to(m.dtype)


def _sublayer_scale(gate: Optional[Tensor], units: Optional[Tensor]) -> Optional[Tensor]:
    """Scale of a whole sub-layer: its own gate times "some unit is left"."""
    present = _any_kept(units)
    if gate is None:
        return present
    return gate if present is None else gate * present


@contextlib.contextmanager
def apply_masks(model: Wav2Vec2CTC, masks: Masks):
    """Within this block ``model`` computes with ``masks`` applied (module doc); plain PyTorch ops
    only (the inference fast path skips the module calls the masks hook into)."""
    masks.check(model.config)
    handles = []

    def scale_output(m: Tensor, shape):
        def hook(module, args, out):
            return out * m.reshape(shape)
        return hook

    def scale_input(m: Tensor):
        def hook(module, args):
            return (args[0] * m,) + tuple(args[1:])
        return hook

    blocks = model.feature_extractor.conv_layers
    last = len(blocks) - 1
    for i, m in enumerate(masks.conv):
        if m is None:
            continue
        block = blocks[i]
        if isinstance(block.norm, ChannelLayerNorm):
            def norm_hook(module, args, out, keep=m != 0):
                y = _masked_layer_norm(args[0].transpose(1, 2), keep, module.weight, module.bias, module.eps)
                return y.transpose(1, 2)
            handles.append(block.norm.register_forward_hook(norm_hook))
        if i < last:
            handles.append(block.register_forward_hook(scale_output(m, (1, -1, 1))))
        else:
            # removed channels are zeroed for what reads the features (features_pen), kept ones unscaled
            handles.append(block.register_forward_hook(scale_output((m != 0).to(m.dtype), (1, -1, 1))))
            ln = model.feature_projection.layer_norm

            def projection_norm_hook(module, args, out, m=m):
                return _masked_layer_norm(args[0], m != 0, module.weight, module.bias, module.eps) * m
            handles.append(ln.register_forward_hook(projection_norm_hook))

    z = masks.hidden
    if z is not None:
        keep = (z != 0).to(z.dtype)
        handles.append(model.feature_projection.register_forward_hook(scale_output(z, (1, 1, -1))))
        pos_conv = model.encoder.pos_conv
        handles.append(pos_conv.register_forward_pre_hook(scale_input(keep)))
        handles.append(pos_conv.register_forward_hook(scale_output(keep, (1, 1, -1))))

        def stream_norm_hook(module, args, out, keep=z != 0):
            return _masked_layer_norm(args[0], keep, module.weight, module.bias, module.eps)
        norms = [model.encoder.layer_norm] + [n for layer in model.encoder.layers
                                              for n in (layer.self_attn_layer_norm, layer.final_layer_norm)]
        handles.extend(n.register_forward_hook(stream_norm_hook) for n in norms if n is not None)
        for layer in model.encoder.layers:
            for linear in ((layer.self_attn.out_proj if layer.self_attn is not None else None), layer.fc2):
                if linear is not None:
                    handles.append(linear.register_forward_hook(scale_output(z, (1, 1, -1))))

    for j, layer in enumerate(model.encoder.layers):
        h, a = masks.heads[j], masks.attention_layer[j]
        if layer.self_attn is not None:
            if h is not None:
                per_column = h.repeat_interleave(layer.self_attn.head_dim)
                handles.append(layer.self_attn.out_proj.register_forward_pre_hook(scale_input(per_column)))
            scale = _sublayer_scale(a, h)
            if scale is not None:
                handles.append(layer.self_attn.register_forward_hook(scale_output(scale, ())))
        u, f = masks.ffn[j], masks.ffn_layer[j]
        if layer.fc1 is not None:
            if u is not None:
                handles.append(layer.fc2.register_forward_pre_hook(scale_input(u)))
            scale = _sublayer_scale(f, u)
            if scale is not None:
                handles.append(layer.fc2.register_forward_hook(scale_output(scale, ())))
    try:
        with plain_ops():
            yield model
    finally:
        for handle in handles:
            handle.remove()


def _kept(m: Optional[Tensor], size: int) -> Tensor:
    """Indices of the units a mask keeps (all without a mask)."""
    if m is None:
        return torch.arange(size)
    return (m != 0).nonzero().flatten().cpu()


def pruned_config(config: Wav2Vec2Config, masks: Masks) -> Wav2Vec2Config:
    """The config of the dense model that ``masks`` leave (:func:`materialise`)."""
    masks.check(config)
    if config.conv_share and any(m is not None for m in masks.conv):
        raise ConfigError("conv channel masks on a model with conv_share: shared kernels would need one mask; "
                          "prune without the conv structure")
    for i, (m, t) in enumerate(zip(masks.conv, conv_tie(config))):
        if m is not None and t > 1 and not bool((m.reshape(t, -1) == m.reshape(t, -1)[:1]).all()):
            raise ValueError(f"masks.conv[{i}] differs between the {t} channel groups; grouped convs need "
                             f"channel j of every group masked alike (conv_tie)")
    conv = [[len(_kept(m, c)), k, s] for m, (c, k, s) in zip(masks.conv, config.conv_layers)]
    empty = [i for i, c in enumerate(conv) if c[0] == 0]
    if empty:
        raise ConfigError(f"the masks remove every channel of conv layer(s) {empty}; the model would have no input")
    heads, ffn = [], []
    for j in range(config.num_layers):
        h = len(_kept(masks.heads[j], config.heads(j)))
        a = _sublayer_scale(masks.attention_layer[j], masks.heads[j])
        heads.append(0 if a is not None and float(a) == 0.0 else h)
        u = len(_kept(masks.ffn[j], config.ffn_width(j)))
        f = _sublayer_scale(masks.ffn_layer[j], masks.ffn[j])
        ffn.append(0 if f is not None and float(f) == 0.0 else u)
    changes = dict(conv_layers=conv,
                   layer_num_heads=None if all(h == config.num_heads for h in heads) else heads,
                   layer_ffn_dims=None if all(u == config.ffn_dim for u in ffn) else ffn)
    if masks.hidden is not None:
        tie = hidden_tie(config)
        m = masks.hidden.reshape(tie, -1)
        if not bool((m == m[:1]).all()):
            raise ValueError(f"masks.hidden differs between the {tie} groups of the positional conv; dimension j "
                             f"of every group must be masked alike (hidden_tie)")
        width = len(_kept(masks.hidden, config.embed_dim))
        if width == 0:
            raise ConfigError("the masks remove every dimension of the residual stream (hidden)")
        if width != config.embed_dim:
            changes.update(embed_dim=width, attention_head_dim=config.head_dim)
    new = Wav2Vec2Config.from_dict({**config.to_dict(), **changes}, source="pruned config")
    before, after = conv_layer_groups(config), conv_layer_groups(new)
    if before != after:
        raise ConfigError(f"pruned conv channels {[c[0] for c in conv]} change which layers are grouped "
                          f"(conv_groups={config.conv_groups}: {before} -> {after}); prune without conv channels "
                          f"or use channel counts divisible by conv_groups")
    return new


def _scale(m: Optional[Tensor], idx: Tensor) -> Optional[Tensor]:
    return None if m is None else m.detach().cpu().float()[idx]


@torch.no_grad()
def materialise(model: Wav2Vec2CTC, masks: Masks) -> Wav2Vec2CTC:
    """The dense model that computes what ``model`` computes under ``masks`` (:func:`apply_masks`):
    removed units are cut out of the weights and mask values folded into them. Returns a new
    :class:`Wav2Vec2CTC` in eval mode (heterogeneous config, same tokens) on the CPU."""
    config = model.config
    new_config = pruned_config(config, masks)
    masks = masks.detach()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    out: Dict[str, Tensor] = dict(state)

    # CNN front end
    groups = conv_layer_groups(config)
    n_conv = len(config.conv_layers)
    in_keep, in_scale, in_channels = torch.arange(1), None, 1
    for i, (c, _, _) in enumerate(config.conv_layers):
        p = f"feature_extractor.conv_layers.{i}."
        keep = _kept(masks.conv[i], c)
        per_group_in = in_channels // groups[i]
        # the grouped weight indexes inputs within their group; the kept positions are the same in every group
        cols = in_keep[in_keep < per_group_in]
        w = state[p + "conv.weight"][keep][:, cols]
        if in_scale is not None:
            w = w * in_scale[in_keep < per_group_in][None, :, None]
        out[p + "conv.weight"] = w.contiguous()
        for name in ("conv.bias", "norm.weight", "norm.bias"):
            if p + name in state:
                out[p + name] = state[p + name][keep].clone()
        last = i == n_conv - 1
        in_keep, in_scale, in_channels = keep, (None if last else _scale(masks.conv[i], keep)), c
    keep = in_keep
    ln_scale = _scale(masks.conv[-1], keep)
    for name in ("weight", "bias"):
        v = state[f"feature_projection.layer_norm.{name}"][keep]
        out[f"feature_projection.layer_norm.{name}"] = v * ln_scale if ln_scale is not None else v
    out["feature_projection.projection.weight"] = state["feature_projection.projection.weight"][:, keep].contiguous()

    # transformer layers
    hd = config.head_dim
    for j in range(config.num_layers):
        p = f"encoder.layers.{j}."
        heads_left = new_config.heads(j)
        attn_keys = [k for k in state if k.startswith(p + "self_attn.")]
        if heads_left == 0:
            for k in attn_keys:
                out.pop(k)
            if config.layer_norm_first:
                out.pop(p + "self_attn_layer_norm.weight", None)
                out.pop(p + "self_attn_layer_norm.bias", None)
        elif attn_keys:
            heads = _kept(masks.heads[j], config.heads(j))
            rows = (heads[:, None] * hd + torch.arange(hd)[None, :]).flatten()
            for proj in ("q_proj", "k_proj", "v_proj"):
                out[p + f"self_attn.{proj}.weight"] = state[p + f"self_attn.{proj}.weight"][rows].contiguous()
                out[p + f"self_attn.{proj}.bias"] = state[p + f"self_attn.{proj}.bias"][rows].clone()
            w = state[p + "self_attn.out_proj.weight"][:, rows]
            b = state[p + "self_attn.out_proj.bias"].clone()
            h_scale = _scale(masks.heads[j], heads)
            if h_scale is not None:
                w = w * h_scale.repeat_interleave(hd)[None, :]
            a = _sublayer_scale(masks.attention_layer[j], masks.heads[j])
            if a is not None:
                w, b = w * float(a), b * float(a)
            out[p + "self_attn.out_proj.weight"] = w.contiguous()
            out[p + "self_attn.out_proj.bias"] = b

        units_left = new_config.ffn_width(j)
        if units_left == 0:
            for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
                out.pop(p + k, None)
            if config.layer_norm_first:
                out.pop(p + "final_layer_norm.weight", None)
                out.pop(p + "final_layer_norm.bias", None)
        elif p + "fc1.weight" in state:
            units = _kept(masks.ffn[j], config.ffn_width(j))
            out[p + "fc1.weight"] = state[p + "fc1.weight"][units].contiguous()
            out[p + "fc1.bias"] = state[p + "fc1.bias"][units].clone()
            w = state[p + "fc2.weight"][:, units]
            b = state[p + "fc2.bias"].clone()
            u_scale = _scale(masks.ffn[j], units)
            if u_scale is not None:
                w = w * u_scale[None, :]
            f = _sublayer_scale(masks.ffn_layer[j], masks.ffn[j])
            if f is not None:
                w, b = w * float(f), b * float(f)
            out[p + "fc2.weight"] = w.contiguous()
            out[p + "fc2.bias"] = b

    if masks.hidden is not None and new_config.embed_dim != config.embed_dim:
        _cut_hidden(out, config, masks.hidden)

    dense = Wav2Vec2CTC(new_config, model.tokens)
    load_state_dict_strict(dense, out, "materialise()")
    return dense.eval()


def _cut_hidden(out: Dict[str, Tensor], config: Wav2Vec2Config, z: Tensor) -> None:
    """The residual stream's kept dimensions (mask ``z``) cut out of every tensor that reads or
    writes it, in place; ``z`` folded into what writes it (module doc)."""
    keep = _kept(z, config.embed_dim)
    zk = z.detach().cpu().float()[keep]

    def rows(key, scale=False):
        if key in out:
            t = out[key][keep]
            out[key] = (t * (zk if t.dim() == 1 else zk[:, None]) if scale else t).contiguous()

    def cols(key):
        if key in out:
            out[key] = out[key][:, keep].contiguous()

    for name in ("weight", "bias"):
        rows(f"feature_projection.projection.{name}", scale=True)
        rows(f"encoder.layer_norm.{name}")
    # positional conv: its effective (weight-normalised) kernel cut, kept as v with g = its norm
    per_group = config.embed_dim // config.pos_conv_groups
    inside = keep[keep < per_group]
    w = torch._weight_norm(out["encoder.pos_conv.weight_v"], out["encoder.pos_conv.weight_g"], 2)[keep][:, inside]
    norm = w.norm(dim=(0, 1), keepdim=True)
    out["encoder.pos_conv.weight_v"] = torch.where(norm > 0, w, torch.ones_like(w)).contiguous()
    out["encoder.pos_conv.weight_g"] = norm
    rows("encoder.pos_conv.bias")
    for j in range(config.num_layers):
        p = f"encoder.layers.{j}."
        for name in ("weight", "bias"):
            rows(p + f"self_attn_layer_norm.{name}")
            rows(p + f"final_layer_norm.{name}")
            rows(p + f"self_attn.out_proj.{name}", scale=True)
            rows(p + f"fc2.{name}", scale=True)
        for proj in ("q_proj", "k_proj", "v_proj"):
            cols(p + f"self_attn.{proj}.weight")
        cols(p + "fc1.weight")
    cols("ctc_head.weight")
    out["mask_emb"] = out["mask_emb"][keep].contiguous()  # replaces the (scaled) projection output as it is
