"""Quantization-aware training (QAT): fake-quantized modules, and their conversion to int8.

``prepare_qat(model, config)`` swaps, in place, the modules that asrc's ``static-conv`` int8
model runs in int8 for fake-quantized twins that keep their parameters (same objects, same
state-dict names, ties kept) and add activation-range buffers:

=====================================  ===========================================================
CNN layers 2..N (``conv``)             :class:`QATConv1d`: uint8 per-tensor input and output, int8
                                       per-channel symmetric weights (static int8 conv)
positional conv                        :class:`QATPositionalConv`: the same around its folded kernel
every ``nn.Linear``                    :class:`QATLinear`: int8 per-channel weights, input quantized
                                       from its own range per call with 7 bits (torch's dynamic
                                       int8 Linear, which uses ``reduce_range``)
=====================================  ===========================================================

The first conv layer (raw waveform, a tiny share of the compute) stays float, as in
``static-conv``. Activation ranges are exponential moving averages of each batch's
``range_percentile`` quantiles (at 100: its min/max, torch's ``MovingAverageMinMaxObserver``
rule), updated in training mode only. The default clips the rare large values: the CNN's
GELU outputs are heavy-tailed, and a min/max range leaves their bulk a handful of codes, which
trains badly (gradients of the first conv layer's norm grow by orders of magnitude); quantization
parameters come from :func:`asrc.models.int8.affine_qparams` and
:func:`asrc.models.int8.symmetric_weight_scale`, the functions the int8 modules are built
with, and gradients pass straight through the rounding (``torch.fake_quantize_*``, clipped
outside the range). :func:`convert_qat` then builds :class:`asrc.models.int8.Int8Conv1d` and
torch's dynamic int8 Linear from the same numbers: the int8 model computes what the
fake-quantized one did up to int32-accumulation and requantization rounding (a test holds
logits and greedy tokens to it).

Why asrc's own fake quantization and not a framework: ``torch.ao.quantization`` (eager
``prepare_qat``/``convert`` or FX) is deprecated upstream; ``torchao``'s QAT
(``IntXQuantizationAwareTrainingConfig``, ``Int8DynActInt4WeightQATQuantizer``) fake-quantizes
``nn.Linear`` and embeddings for torchao's own Linear kernels, not ``Conv1d``, and its int8
convs run through ``torch.compile`` (inductor) only. Neither converts to the modules that asrc
model directories load and export. The fake-quant ops used here are core ATen ops (CPU and
CUDA, with their straight-through gradients); the cost is one min/max reduction and two
elementwise passes per quantized activation and one per weight per step, with the
activations before rounding kept for the backward pass.

``QATConfig`` is the ``qat:`` section of an ``asrc-train`` config (:mod:`asrc.espnet.task`),
fake quantization starts after ``start_updates`` optimizer updates, and the ranges, like the
update counter, are buffers: they are in ``checkpoint.pth`` and resume with it.
"""

import copy
import dataclasses
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asrc.errors import AsrcError, ConfigError
from asrc.models.int8 import (WEIGHT_QMAX, WEIGHT_QMIN, FoldedPositionalConv, Int8Conv1d, activation_qmax,
                              affine_qparams, symmetric_weight_scale)
from asrc.models.quantized import QuantizationSpec, set_engine, set_module
from asrc.models.wav2vec2 import PositionalConv, Wav2Vec2CTC

__all__ = ["QATConfig", "QATConv1d", "QATLinear", "QATPositionalConv", "convert_experiment", "convert_qat",
           "export_int8_dir", "prepare_qat", "read_qat_experiment", "set_fake_quant"]

PERCENTILE_SAMPLES = 1 << 16
#: dynamic int8 Linear input: 7-bit codes, as torch's dynamic Linear calls fbgemm with ``reduce_range``.
DYNAMIC_QMAX = 127


@dataclass
class QATConfig:
    """The ``qat:`` section of an ``asrc-train`` config.

    ``start_updates``    fake quantization from this optimizer update on (0: from the start);
                         the updates before it train the float model
    ``activation_bits``  8 (default), or 7 for a model to run at int8 speed on CPUs without
                         VNNI (static activations, as ``asrc-quantize --activation-bits``;
                         AVX2-only CPUs run 8-bit convs exactly but as float products: their
                         int16 sums saturate; 7 bits cost accuracy, egs/an4/RESULTS.md)
    ``range_momentum``   weight of each batch in the moving average of activation ranges
    ``range_percentile`` each batch's range: its ``100 - p`` and ``p`` percentiles (of at most
                         65536 evenly strided values); 100 = its min and max
    """

    start_updates: int = 0
    activation_bits: int = 8
    range_momentum: float = 0.01
    range_percentile: float = 99.99

    _CHECKS = {
        "start_updates": (lambda v: type(v) is int and v >= 0, "an integer >= 0"),
        "activation_bits": (lambda v: v in (7, 8) and type(v) is int, "7 or 8"),
        "range_momentum": (lambda v: type(v) in (int, float) and 0 < v <= 1, "a number in (0, 1]"),
        "range_percentile": (lambda v: type(v) in (int, float) and 50 < v <= 100, "a number in (50, 100]"),
    }

    @classmethod
    def from_dict(cls, d, source: str = "qat") -> "QATConfig":
        """Parse a mapping; unknown keys and wrong values are a one-line :class:`ConfigError`."""
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of {sorted(cls._CHECKS)}, got {d!r}")
        unknown = sorted(set(d) - set(cls._CHECKS))
        if unknown:
            raise ConfigError(f"{source}: unknown keys {unknown} (known: {list(cls._CHECKS)})")
        wrong = [f"{source}.{k}={v!r} must be {cls._CHECKS[k][1]}" for k, v in d.items() if not cls._CHECKS[k][0](v)]
        if wrong:
            raise ConfigError("; ".join(wrong))
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def activation_qmax(self) -> int:
        return activation_qmax(self.activation_bits == 7)


class ActivationRange(nn.Module):
    """Moving min/max of an activation (buffer ``range = [lo, hi]``; ``[inf, -inf]`` before the
    first observation) and its uint8 fake quantization."""

    def __init__(self, quant_max: int, momentum: float, percentile: float = 100.0, code_max: Optional[int] = None):
        super().__init__()
        self.quant_max, self.momentum, self.percentile = quant_max, momentum, percentile
        # largest code of the fake quantization: quant_max for a conv's input (asrc's int8 convs
        # clamp their input codes there), 255 for its output (torch's quint8 requantization)
        self.code_max = quant_max if code_max is None else code_max
        self.register_buffer("range", torch.tensor([float("inf"), float("-inf")]))

    @property
    def observed(self) -> bool:
        return bool(self.range[0] <= self.range[1])

    def observe(self, x: Tensor) -> None:
        with torch.no_grad():
            x = x.detach().float()
            if self.percentile < 100:
                flat = x.flatten()
                flat = flat[::max(1, flat.numel() // PERCENTILE_SAMPLES)]
                q = torch.tensor([1.0 - self.percentile / 100.0, self.percentile / 100.0], device=x.device)
                batch = torch.quantile(flat, q)
            else:
                batch = torch.stack([x.min(), x.max()])
            if self.observed:
                self.range.lerp_(batch, self.momentum)
            else:
                self.range.copy_(batch)

    def qparams(self) -> Tuple[float, int]:
        """``(scale, zero_point)`` of the int8 module."""
        if not self.observed:
            raise AsrcError("activation range never observed: fake quantization did not run in training "
                            "(qat.start_updates beyond the updates trained?)")
        lo, hi = self.range.tolist()
        return affine_qparams(lo, hi, self.quant_max)

    def forward(self, x: Tensor, observe: bool) -> Tensor:
        if observe:
            self.observe(x)
        scale, zero_point = affine_qparams(self.range[0], self.range[1], self.quant_max)
        return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, 0, self.code_max).to(x.dtype)


def fake_quantize_weight(weight: Tensor) -> Tensor:
    """Symmetric int8 per output channel (dim 0), as :func:`asrc.models.int8.quantize_weight`."""
    scale = symmetric_weight_scale(weight, per_channel=True)
    return torch.fake_quantize_per_channel_affine(weight.float(), scale, torch.zeros_like(scale, dtype=torch.int32), 0,
                                                  WEIGHT_QMIN, WEIGHT_QMAX)


def fake_quantize_dynamic(x: Tensor) -> Tensor:
    """The input of a dynamic int8 Linear: 7-bit affine over this tensor's own range."""
    scale, zero_point = affine_qparams(x.detach().min().float(), x.detach().max().float(), DYNAMIC_QMAX)
    return torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, 0, DYNAMIC_QMAX).to(x.dtype)


def stop_dead_frames(y: Tensor) -> Tensor:
    """``y`` (a fake-quantized conv output ``[batch, channel, frame]``), passing no gradient
    through the frames that rounded to zero in every channel; the values are ``y``'s exactly.

    The straight-through estimator takes the rounding for the identity, which holds when the
    rounding error is small against the value. A frame whose every channel rounds to zero (a
    near-silent one: the CNN convs have no bias and ``GELU(0) = 0``, so the zeros stay exact
    layer after layer) has lost all of itself, and downstream derivatives taken at that zero
    are not the float model's: the feature projection's LayerNorm, seeing a frame of zero
    variance, multiplies its gradient by ``1 / sqrt(eps)`` (316 at 1e-5) where the float frame,
    small but not zero, gets ``1 / std``. On the demo student such frames, a tenth of the valid
    ones on AN4, carried 99.9% of the squared gradient at the CNN output and made the gradient
    norm ~40x the float model's. The int8 model computes the same zeros; only the backward
    pass changes (no gradient where the forward pass is constant in the frame anyway)."""
    dead = (y.detach() == 0).all(dim=1, keepdim=True)
    return torch.where(dead, y.detach(), y)


def _rebuild(module: nn.Module, cls, **drop):
    """``module`` as an instance of ``cls`` (a sub- or superclass) holding the same parameter
    and buffer objects: ties between modules and the optimizer's references stay valid."""
    new = cls.__new__(cls)
    new.__dict__.update({k: v for k, v in module.__dict__.items() if k != "fake_quant"})
    for registry in ("_parameters", "_buffers", "_modules"):
        new.__dict__[registry] = dict(module.__dict__[registry])
    return new


class _FakeQuant:
    """Mixin: the on/off switch (:func:`set_fake_quant`); in eval mode only with observed ranges."""

    fake_quant = False

    def _quantizing(self, ranges) -> bool:
        return self.fake_quant and (self.training or all(r.observed for r in ranges))

    @classmethod
    def from_float(cls, module: nn.Module, config: QATConfig):
        """The fake-quantized twin of ``module`` (same parameters), observing its input and output ranges."""
        q = _rebuild(module, cls)
        q.input_range = ActivationRange(config.activation_qmax, config.range_momentum, config.range_percentile)
        q.output_range = ActivationRange(config.activation_qmax, config.range_momentum, config.range_percentile,
                                         code_max=255)
        return q


class QATConv1d(_FakeQuant, nn.Conv1d):
    """``nn.Conv1d`` (same parameters) fake-quantized as :class:`Int8Conv1d` computes."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._quantizing((self.input_range, self.output_range)):
            return super().forward(x)
        x = self.input_range(x, self.training)
        y = self._conv_forward(x, fake_quantize_weight(self.weight), self.bias)
        return stop_dead_frames(self.output_range(y, self.training))


class QATPositionalConv(_FakeQuant, PositionalConv):
    """:class:`PositionalConv` (same parameters) fake-quantized around its folded kernel."""

    def forward(self, x: Tensor) -> Tensor:
        if not self._quantizing((self.input_range, self.output_range)):
            return super().forward(x)
        x = self.input_range(x.transpose(1, 2), self.training)
        y = F.conv1d(x, fake_quantize_weight(self.weight()), self.bias, padding=self.kernel // 2, groups=self.groups)
        y = self.output_range(y, self.training)
        if self.kernel % 2 == 0:
            y = y[:, :, :-1]
        return F.gelu(y).transpose(1, 2)


class QATLinear(_FakeQuant, nn.Linear):
    """``nn.Linear`` (same parameters) fake-quantized as torch's dynamic int8 Linear computes."""

    @classmethod
    def from_float(cls, linear: nn.Linear, config: QATConfig) -> "QATLinear":
        return _rebuild(linear, cls)

    def forward(self, x: Tensor) -> Tensor:
        if not self._quantizing(()):
            return super().forward(x)
        return F.linear(fake_quantize_dynamic(x), fake_quantize_weight(self.weight), self.bias)


QAT_MODULES = (QATConv1d, QATPositionalConv, QATLinear)


def qat_targets(model: Wav2Vec2CTC) -> Dict[str, str]:
    """``{module name: kind}`` of what :func:`prepare_qat` swaps (``conv``, ``pos_conv``, ``linear``)."""
    targets = {f"feature_extractor.conv_layers.{i}.conv": "conv"
               for i in range(1, len(model.feature_extractor.conv_layers))}
    for name, m in model.named_modules():
        if type(m) is PositionalConv:
            targets[name] = "pos_conv"
        elif type(m) is nn.Linear:
            targets[name] = "linear"
    return targets


def prepare_qat(model: Wav2Vec2CTC, config: QATConfig) -> Wav2Vec2CTC:
    """Swap the int8 targets of ``model`` for fake-quantized twins, in place (module doc).

    Fake quantization is off until :func:`set_fake_quant` turns it on."""
    if any(isinstance(m, QAT_MODULES) for m in model.modules()):
        raise ValueError("prepare_qat: the model is prepared already")
    kinds = {"conv": QATConv1d, "pos_conv": QATPositionalConv, "linear": QATLinear}
    for name, kind in qat_targets(model).items():
        set_module(model, name, kinds[kind].from_float(model.get_submodule(name), config))
    model.qat_config = config
    return model


def set_fake_quant(model: nn.Module, enabled: bool) -> None:
    for m in model.modules():
        if isinstance(m, QAT_MODULES):
            m.fake_quant = enabled


@torch.no_grad()
def convert_qat(model: Wav2Vec2CTC, engine: Optional[str] = None) -> Tuple[Wav2Vec2CTC, QuantizationSpec]:
    """The int8 model (``qat`` mode, the ``static-conv`` structure) of a prepared, trained model.

    ``model`` is left untouched; returns ``(int8 model in eval mode, QuantizationSpec)``."""
    from asrc.quant.quantize import default_engine, dynamic_linear

    config: QATConfig = getattr(model, "qat_config", None)
    if config is None:
        raise ValueError("convert_qat: the model was not prepared with prepare_qat")
    engine = engine or default_engine()
    set_engine(engine)
    q = copy.deepcopy(model).cpu().float().eval()
    spec = QuantizationSpec(mode="qat", engine=engine, activation_reduce_range=config.activation_bits == 7,
                            calibration={"qat": config.to_dict()})
    linear = []
    for name, m in list(q.named_modules()):
        try:
            if isinstance(m, QATConv1d):
                conv = nn.Conv1d(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0],
                                 groups=m.groups, bias=m.bias is not None)
                set_module(q, name, Int8Conv1d.from_qparams(conv, m.input_range.qparams(), m.output_range.qparams(),
                                                            weight=m.weight, bias=m.bias,
                                                            input_qmax=m.input_range.quant_max))
                spec.static_int8_conv.append(name)
            elif isinstance(m, QATPositionalConv):
                folded = FoldedPositionalConv.from_positional_conv(m)
                folded.conv = Int8Conv1d.from_qparams(folded.conv, m.input_range.qparams(), m.output_range.qparams(),
                                                      input_qmax=m.input_range.quant_max)
                set_module(q, name, folded)
                spec.folded_weight_norm.append(name)
                spec.static_int8_conv.append(f"{name}.conv")
            elif isinstance(m, QATLinear):
                set_module(q, name, _rebuild(m, nn.Linear))
                linear.append(name)
        except AsrcError as e:
            raise AsrcError(f"{name}: {e}") from e
    spec.dynamic_int8_linear = dynamic_linear(q, linear)
    del q.qat_config
    return q.eval(), spec


def read_qat_experiment(exp_dir, checkpoint: Optional[str] = None) -> Wav2Vec2CTC:
    """The fake-quantized model of an ``asrc-train`` experiment with a ``qat:`` section, in eval
    mode with fake quantization on (as it was validated in training)."""
    from asrc.models.espnet_dir import read_experiment_state

    args, config, tokens, state, path = read_experiment_state(exp_dir, checkpoint)
    if args.get("qat") is None:
        raise ConfigError(f"{exp_dir}: trained without a qat section; quantize its model directory with a "
                          f"post-training mode instead (asrc-quantize --mode static-conv)")
    if args.get("prune") is not None:
        raise ConfigError(f"{exp_dir}: trained with both prune: and qat:, which asrc does not convert (the int8 "
                          f"model would be the unpruned student); prune first, then fine-tune the dense model with qat:")
    model = prepare_qat(Wav2Vec2CTC(config, tokens), QATConfig.from_dict(args["qat"], source=f"{exp_dir} qat"))
    from asrc.models.io import load_state_dict_strict

    load_state_dict_strict(model, state, str(path))
    set_fake_quant(model, True)
    return model.eval()


def float_state(model: nn.Module) -> Dict[str, Tensor]:
    """The state dict without the QAT range buffers: that of the float model."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith(("input_range.range", "output_range.range"))}


def convert_experiment(exp_dir, checkpoint: Optional[str] = None, engine: Optional[str] = None
                       ) -> Tuple[Wav2Vec2CTC, Wav2Vec2CTC, QuantizationSpec]:
    """``(float model, int8 model, spec)`` of a QAT experiment (``asrc-quantize EXP OUT --mode qat``)."""
    fq = read_qat_experiment(exp_dir, checkpoint)
    qmodel, spec = convert_qat(fq, engine)
    spec.calibration["source_experiment"] = str(exp_dir)
    if checkpoint is not None:
        spec.calibration["checkpoint"] = str(checkpoint)
    float_model = Wav2Vec2CTC(fq.config, fq.tokens)
    float_model.load_state_dict(float_state(fq))
    return float_model.eval(), qmodel, spec


def export_int8_dir(exp_dir, out_dir, checkpoint: Optional[str] = None):
    """Write the int8 model directory of a QAT experiment (``asrc-train --export_model_dir``)."""
    from asrc.models.quantized import save_quantized

    _, qmodel, spec = convert_experiment(exp_dir, checkpoint)
    save_quantized(qmodel, spec, out_dir, qmodel.tokens)
    return out_dir
