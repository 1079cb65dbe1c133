"""Activation ranges of static int8 convs from calibration audio, and bias correction.

Range methods (``ConvQuantOptions.calibration``, ``asrc-quantize --conv-calibration``), each
giving the ``[lo, hi]`` a uint8 per-tensor affine activation covers:

``histogram``   torch's ``HistogramObserver``: a search over clipped ranges of a 2048-bin
                histogram that minimises its estimate of the quantization error (asrc's
                behaviour before these options existed, and the default until 2026-12-07).
``minmax``      the extremes seen: nothing is clipped, the step is widest.
``percentile``  the ``percentile`` / ``100 - percentile`` quantiles of the values seen: a few
                outliers are clipped so that the step of the rest is finer. The default: the
                most accurate method in every comparison on AN4 (two students, two CPUs, 7-
                and 8-bit activations, the CNN or the positional conv; egs/an4/RESULTS.md).
``mse``         the shrink factor of ``[min, max]`` (one of 100) whose fake quantization has
                the smallest mean squared error on the values seen, computed exactly rather
                than from a histogram.

``percentile`` and ``mse`` work on a random subsample of every tensor observed (at most
:data:`SAMPLES_PER_CALL` values per call, :data:`MAX_SAMPLES` in all, seeded) plus the exact
extremes, so that calibrating the base model's wide CNN activations stays in memory.

Bias correction (Nagel et al., *Data-free quantization through weight equalization and bias
correction*, ICCV 2019; here the empirical variant): int8 rounding of weights and inputs
shifts the mean of each output channel; running the calibration audio through the float model
and through the quantized one, conv by conv in the order they run, the bias of each int8 conv
is moved by the mean per-channel difference of its accumulator (before the output is
requantized) from the float conv's output, so that the quantized model's channels keep the
float model's means. The output's own rounding and clipping are left out: clipping is not a
shift of the mean that a bias could undo. Convs without a bias get one.

Which convs are corrected (``ConvQuantOptions.bias_correction``, ``asrc-quantize
--bias-correction [WHICH]``): ``all`` the static int8 convs, ``pos-conv`` the positional conv
alone, ``cnn`` the CNN layers alone, ``none``. The mean it restores is over every frame, and the
shift it undoes is not the same in every frame: most of a CNN conv's is the clipping of its
input's loudest values (the percentile / histogram ranges clip them), which silent frames do not
have. The correction moves silent frames by what loud frames lost, and their features, nearly
constant across channels, are what the layer norm after the CNN divides by their small spread.
On the AN4 teacher the CNN's correction cost CER on asrc's CPU path and the positional conv's
gained on both paths (egs/an4/RESULTS.md, "Bias correction, conv by conv"; its
``local/int8_frame_errors.py`` measures the features of quiet frames against the rest).
"""

from dataclasses import dataclass
from typing import Dict, List, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asrc.errors import ConfigError
from asrc.models.int8 import affine_qparams

CALIBRATION_METHODS = ("histogram", "minmax", "percentile", "mse")
#: which static int8 convs bias correction moves (module doc); ``True`` means ``all``, ``False`` ``none``
BIAS_CORRECTION = ("none", "all", "pos-conv", "cnn")
#: Module-name prefix of the CNN front end's convs.
CNN_PREFIX = "feature_extractor."
_BIAS_CORRECTION_PREFIX = {"pos-conv": "encoder.pos_conv.", "cnn": CNN_PREFIX}
WEIGHT_GRANULARITY = ("per-channel", "per-tensor")
#: Input ranges of the CNN's int8 convs (``ConvQuantOptions.activations``): one calibrated
#: range per conv, or one per frame and conv group from the frame itself (no calibration).
ACTIVATION_GRANULARITY = ("per-tensor", "per-frame")
SAMPLES_PER_CALL = 1 << 16
MAX_SAMPLES = 1 << 21


@dataclass
class ConvQuantOptions:
    """How static int8 convs are quantized after training (each option alone or together).

    ``weights``          ``per-channel`` (one scale per output channel) or ``per-tensor``
    ``calibration``      activation range method, one of :data:`CALIBRATION_METHODS`
    ``percentile``       for ``calibration: percentile``: the upper quantile in percent
    ``bias_correction``  move int8 conv biases by the mean output shift: which convs, one of
                         :data:`BIAS_CORRECTION` (``True``: all; module doc)
    ``activations``      input ranges of the CNN layers 2..N, one of :data:`ACTIVATION_GRANULARITY`:
                         ``per-tensor`` (calibrated, the default) or ``per-frame`` (each input
                         frame's channels of a conv group quantized over their own range on every
                         call: quiet frames keep their codes; the positional conv stays calibrated)
    """

    weights: str = "per-channel"
    calibration: str = "percentile"
    percentile: float = 99.99
    bias_correction: Union[str, bool] = "none"
    activations: str = "per-tensor"

    def __post_init__(self):
        if isinstance(self.bias_correction, bool) or self.bias_correction is None:
            self.bias_correction = "all" if self.bias_correction else "none"
        if self.bias_correction not in BIAS_CORRECTION:
            raise ConfigError(f"bias correction={self.bias_correction!r} is not one of {list(BIAS_CORRECTION)}")
        if self.activations not in ACTIVATION_GRANULARITY:
            raise ConfigError(f"conv activations={self.activations!r} is not one of {list(ACTIVATION_GRANULARITY)}")
        if self.weights not in WEIGHT_GRANULARITY:
            raise ConfigError(f"conv weights={self.weights!r} is not one of {list(WEIGHT_GRANULARITY)}")
        if self.calibration not in CALIBRATION_METHODS:
            raise ConfigError(f"conv calibration={self.calibration!r} is not one of {list(CALIBRATION_METHODS)}")
        if not (isinstance(self.percentile, (int, float)) and 50.0 < self.percentile <= 100.0):
            raise ConfigError(f"percentile={self.percentile!r} must be a number in (50, 100]")

    @property
    def per_channel(self) -> bool:
        return self.weights == "per-channel"

    def bias_correction_targets(self, names: Sequence[str]) -> List[str]:
        """Those of the static int8 convs ``names`` whose biases bias correction moves."""
        if self.bias_correction == "none":
            return []
        prefix = _BIAS_CORRECTION_PREFIX.get(self.bias_correction, "")
        return [n for n in names if n.startswith(prefix)]

    def per_frame_targets(self, names: Sequence[str]) -> List[str]:
        """Those of the static int8 convs ``names`` whose input is quantized per frame: the CNN's,
        with ``activations: per-frame``."""
        return [n for n in names if n.startswith(CNN_PREFIX)] if self.activations == "per-frame" else []

    def record(self) -> dict:
        """What ``quantization.yaml`` notes under ``calibration``."""
        d = {"conv_weights": self.weights, "method": self.calibration, "bias_correction": self.bias_correction,
             "conv_activations": self.activations}
        if self.calibration == "percentile":
            d["percentile"] = float(self.percentile)
        return d


class RangeObserver(nn.Module):
    """Observes tensors and gives uint8 ``(scale, zero_point)`` by one of :data:`CALIBRATION_METHODS`."""

    def __init__(self, method: str, quant_max: int, percentile: float = 99.99, seed: int = 0):
        super().__init__()
        self.method, self.quant_max, self.percentile = method, quant_max, percentile
        self.lo, self.hi = float("inf"), float("-inf")
        self.samples: List[Tensor] = []
        self.count = 0
        self.gen = torch.Generator().manual_seed(seed)
        self.histogram = None
        if method == "histogram":
            from torch.ao.quantization.observer import HistogramObserver

            self.histogram = HistogramObserver(dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=0,
                                               quant_max=quant_max)

    def forward(self, x: Tensor) -> Tensor:
        x = x.detach().float()
        if self.histogram is not None:
            self.histogram(x)
            return x
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))
        if self.method in ("percentile", "mse") and self.count < MAX_SAMPLES:
            flat = x.flatten()
            if flat.numel() > SAMPLES_PER_CALL:
                flat = flat[torch.randint(flat.numel(), (SAMPLES_PER_CALL,), generator=self.gen)]
            # A copy: the CNN's fast path applies GELU in place to the tensor observed here.
            self.samples.append(flat.cpu().clone())
            self.count += flat.numel()
        return x

    def range(self):
        """``(lo, hi)`` the activation is to cover."""
        if self.histogram is not None:
            raise ValueError("histogram ranges come with its qparams")
        if self.lo > self.hi:
            raise ValueError("no values observed")
        if self.method == "minmax":
            return self.lo, self.hi
        values = torch.cat(self.samples)
        if self.method == "percentile":
            q = torch.tensor([1.0 - self.percentile / 100.0, self.percentile / 100.0])
            lo, hi = torch.quantile(values[:1 << 24], q).tolist()
            return min(lo, 0.0), hi
        return mse_range(values, self.lo, self.hi, self.quant_max)

    def qparams(self):
        """``(scale: float, zero_point: int)``."""
        if self.histogram is not None:
            scale, zero_point = self.histogram.calculate_qparams()
            return float(scale), int(zero_point)
        return affine_qparams(*self.range(), self.quant_max)


def mse_range(values: Tensor, lo: float, hi: float, quant_max: int, steps: int = 100):
    """The ``(lo, hi) * a``, ``a`` in ``(0, 1]``, whose uint8 fake quantization of ``values``
    has the smallest mean squared error."""
    best, best_err = (lo, hi), float("inf")
    for a in torch.linspace(1.0, 1.0 / steps, steps).tolist():
        scale, zp = affine_qparams(lo * a, hi * a, quant_max)
        err = float(((torch.fake_quantize_per_tensor_affine(values, scale, zp, 0, quant_max) - values) ** 2).mean())
        if err < best_err:
            best, best_err = (min(lo * a, 0.0), hi * a), err
    return best


def int8_accumulator(conv, x: Tensor) -> Tensor:
    """What an :class:`asrc.models.int8.Int8Conv1d` computes before requantizing its output
    (a per-frame conv does not requantize it: its output)."""
    if conv.per_frame:
        return conv.forward_per_frame(x).float()
    scale, zero_point = conv.input_qparams()
    c = conv.conv
    x = torch.fake_quantize_per_tensor_affine(x.float(), scale, zero_point, 0, conv.input_qmax)
    return F.conv1d(x, conv.weight(), conv.bias(), c.stride, c.padding, c.dilation, c.groups)


@torch.inference_mode()
def channel_means(model: nn.Module, names: Sequence[str], waveforms: List[Tensor],
                  of_int8_accumulator: bool = False) -> Dict[str, Tensor]:
    """Mean over time and utterances of every output channel of the modules ``names`` (int8
    convs: of their accumulator with ``of_int8_accumulator``)."""
    sums: Dict[str, Tensor] = {}
    frames: Dict[str, int] = {n: 0 for n in names}
    hooks = []
    for name in names:
        def hook(m, args, out, name=name):
            out = int8_accumulator(m, args[0]) if of_int8_accumulator else out.detach().float()
            s = out.sum(dim=(0, 2))
            sums[name] = sums[name] + s if name in sums else s
            frames[name] += out.shape[0] * out.shape[2]

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        for w in waveforms:
            model(w[None], torch.tensor([w.numel()]))
    finally:
        for h in hooks:
            h.remove()
    return {n: sums[n] / max(frames[n], 1) for n in names}


@torch.inference_mode()
def correct_biases(float_model: nn.Module, qmodel: nn.Module, names: Sequence[str],
                   waveforms: List[Tensor]) -> Dict[str, float]:
    """Empirical bias correction of the int8 convs ``names`` of ``qmodel`` (module doc), in order.

    ``float_model`` has the float convs under the same names. Returns, per conv, the largest
    shift applied to a channel (to report)."""
    reference = channel_means(float_model, names, waveforms)
    shifts = {}
    for name in names:
        got = channel_means(qmodel, [name], waveforms, of_int8_accumulator=True)[name]
        conv = qmodel.get_submodule(name)
        delta = got - reference[name]
        bias = conv.bias()
        bias = torch.zeros_like(delta) if bias is None else bias.detach().float()
        conv.set_bias(bias - delta)
        shifts[name] = float(delta.abs().max())
    return shifts
