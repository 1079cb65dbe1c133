"""Post-training int8 quantization of :class:`asrc.models.Wav2Vec2CTC` for CPU inference.

Modes (``quantize_model(model, mode)``, ``asrc-quantize --mode``):

``dynamic``
    Every ``nn.Linear`` (attention, feed-forward, feature projection, CTC head) gets int8
    weights (symmetric, one scale per output row) and runs through fbgemm with its input
    quantized per call from the batch's own range. The positional conv's weight norm is folded
    into a plain kernel, which stays float, as does the CNN front end. No calibration data.
``static-pos``
    ``dynamic`` plus static int8 for the (folded) positional conv, the biggest weight tensor
    of a narrow student: quantize -> int8 conv -> dequantize with activation scales from
    calibration (percentile ranges over a few utterances by default). Needs calibration audio.
``static-conv``
    ``static-pos`` plus static int8 CNN layers 2..N (the first sees the raw waveform and
    stays float). The norms and GELUs between the convs stay float (torch's int8 GELU is
    slower than dequantize + float GELU). Fastest and smallest, but per-tensor 8-bit CNN
    activations cost accuracy (egs/an4/RESULTS.md). Needs calibration audio. With
    ``ConvQuantOptions(activations="per-frame")`` (``asrc-quantize --conv-activations
    per-frame``) the CNN layers quantize their input per frame instead (per frame and conv
    group), over the frame's own range on every call (:class:`asrc.models.int8.Int8Conv1d`): quiet frames keep
    their precision, at the cost of a range computation per frame.

Static activations use 8 bits unless asked for 7 (see ``quantize_model``): exact on every CPU,
at int8 speed on CPUs with VNNI; 7 bits run at int8 speed everywhere but cost accuracy.

How the static convs are quantized is a :class:`asrc.quant.calibrate.ConvQuantOptions`
(``asrc-quantize --conv-weights --conv-calibration --bias-correction``): weight scales per
output channel (default) or per tensor, the activation range method (default percentile; torch's
histogram search, min/max, MSE), and bias correction. Each can be chosen alone, to measure
what it is worth (egs/an4/RESULTS.md, "int8 of the CNN").

The ``qat`` mode is the ``static-conv`` structure with scales learned in quantization-aware
training; :mod:`asrc.quant.qat` writes it from an ``asrc-train`` experiment.

What was quantized is recorded in ``quantization.yaml`` next to ``config.yaml``
(:func:`asrc.models.quantized.save_quantized`); ``asrc.models.load`` reads such a directory back.
"""

import copy
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from asrc.core.constants import SAMPLE_RATE
from asrc.errors import ConfigError
from asrc.models.int8 import FoldedPositionalConv, Int8Conv1d, activation_qmax
from asrc.models.quantized import (MODES, QuantizationSpec, fold_weight_norm, quantize_linear_dynamic, quiet_ao,
                                   set_attention_dtype, set_engine, set_module)
from asrc.models.wav2vec2 import Wav2Vec2CTC
from asrc.quant.calibrate import ConvQuantOptions, RangeObserver, correct_biases

#: Modes :func:`quantize_model` makes (``qat`` comes from :mod:`asrc.quant.qat`).
PTQ_MODES = ("dynamic", "static-pos", "static-conv")


def default_engine() -> str:
    engines = torch.backends.quantized.supported_engines
    return "x86" if "x86" in engines else torch.backends.quantized.engine


def static_conv_targets(model: Wav2Vec2CTC, mode: str) -> List[str]:
    """Names of the ``nn.Conv1d`` modules that a static ``mode`` quantizes (after folding)."""
    names = [n + ".conv" for n, m in model.named_modules() if isinstance(m, FoldedPositionalConv)]
    if mode in ("static-conv", "qat"):
        names = [f"feature_extractor.conv_layers.{i}.conv"
                 for i in range(1, len(model.feature_extractor.conv_layers))] + names
    return names


def dynamic_linear(model: nn.Module, names: Optional[Sequence[str]] = None) -> List[str]:
    """Replace the ``nn.Linear`` modules ``names`` (default: all) by torch's dynamic int8 Linear."""
    if names is None:
        names = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    quantize_linear_dynamic(model, names)
    return names


def _as_waveforms(calibration) -> List[Tensor]:
    if isinstance(calibration, Tensor):
        calibration = [calibration] if calibration.dim() == 1 else list(calibration)
    wavs = [torch.as_tensor(w, dtype=torch.float32).flatten() for w in calibration]
    if not wavs:
        raise ValueError("calibration: no waveforms given")
    return wavs


@torch.inference_mode()
def _calibrate_convs(model: Wav2Vec2CTC, names: Sequence[str], waveforms: List[Tensor],
                     reduce_range: bool, options: ConvQuantOptions) -> Dict[str, tuple]:
    """Run ``waveforms`` one by one (no padding to skew the ranges) and observe every conv's
    input and output."""
    qmax = activation_qmax(reduce_range)

    def observer(seed):
        return RangeObserver(options.calibration, qmax, options.percentile, seed)

    observers = {n: (observer(2 * i), observer(2 * i + 1)) for i, n in enumerate(names)}
    hooks = []
    for name in names:
        obs_in, obs_out = observers[name]

        def hook(_module, args, out, obs_in=obs_in, obs_out=obs_out):
            obs_in(args[0].detach())
            obs_out(out.detach())

        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        rf = model.config.receptive_field
        for i, w in enumerate(waveforms):
            if w.numel() < rf:
                raise ValueError(f"calibration waveform {i} has {w.numel()} samples; the model needs >= {rf}")
            model(w[None], torch.tensor([w.numel()]))
    finally:
        for h in hooks:
            h.remove()
    return observers


def quantize_model(model: Wav2Vec2CTC, mode: str = "dynamic", calibration=None, *,
                   engine: Optional[str] = None, reduce_range: bool = False,
                   calibration_info: Optional[dict] = None, options: Optional[ConvQuantOptions] = None,
                   attention_dtype: str = "float32"):
    """Quantized copy of ``model`` (the float model is left untouched).

    Args:
        model: a float :class:`Wav2Vec2CTC`.
        mode: one of :data:`MODES`.
        calibration: for the static modes: waveforms (list of 1-D float32 16 kHz tensors, or a
            ``[batch, sample]`` tensor of unpadded rows), e.g. from :func:`asrc.core.audio.read_waveforms`.
        engine: quantized backend (default ``x86``: fbgemm + oneDNN).
        reduce_range: 7-bit activations for static convs, which CPUs without VNNI run at int8
            speed (their 16-bit intermediate sums saturate with 8 bits, so there 8-bit convs
            run exactly but as float products). Default: 8 bits on every CPU (7 bits cost
            accuracy: egs/an4/RESULTS.md), so that the model does not depend on the machine
            that quantized it; the choice is recorded in ``quantization.yaml``.
        calibration_info: what to record about the calibration data in ``quantization.yaml``.
        options: how the static convs are quantized (default :class:`ConvQuantOptions()`:
            per-channel weights, percentile ranges, no bias correction).
        attention_dtype: ``float32`` (default) or ``bfloat16``: the dtype of the attention
            products (activations times activations, not int8 in any mode); bfloat16 runs them on
            the bf16 units of CPUs that have them (AMX, AVX512-BF16), slowly elsewhere.

    Returns:
        ``(quantized_model, QuantizationSpec)``; the model is in eval mode.
    """
    if mode not in PTQ_MODES:
        raise ValueError(f"mode={mode!r} is not one of {list(PTQ_MODES)}"
                         + (" (qat models come from asrc.quant.qat)" if mode in MODES else ""))
    options = options or ConvQuantOptions()
    engine = engine or default_engine()
    set_engine(engine)
    q = copy.deepcopy(model).eval()
    spec = QuantizationSpec(mode=mode, engine=engine, activation_reduce_range=reduce_range)
    spec.folded_weight_norm = fold_weight_norm(q)
    if mode.startswith("static-"):
        if calibration is None:
            raise ValueError(f"mode {mode!r} needs calibration waveforms (asrc-quantize --calib DATA_DIR)")
        waveforms = _as_waveforms(calibration)
        names = static_conv_targets(q, mode)
        corrected = options.bias_correction_targets(names)
        if options.bias_correction != "none" and not corrected:
            raise ConfigError(f"bias correction of {options.bias_correction!r}: mode {mode!r} has no such int8 conv "
                              f"(its static convs: {', '.join(names)})")
        per_frame = options.per_frame_targets(names)
        if options.activations == "per-frame" and not per_frame:
            raise ConfigError(f"per-frame conv activations: mode {mode!r} has no int8 CNN conv (use static-conv)")
        reference = copy.deepcopy(q) if corrected else None
        observers = _calibrate_convs(q, names, waveforms, reduce_range, options)
        for name in names:
            obs_in, obs_out = observers[name]
            set_module(q, name, Int8Conv1d.from_qparams(q.get_submodule(name), obs_in.qparams(), obs_out.qparams(),
                                                        per_channel=options.per_channel,
                                                        input_qmax=activation_qmax(reduce_range),
                                                        per_frame=name in per_frame))
        spec.static_int8_conv = names
        spec.per_frame_int8_conv = per_frame
        spec.calibration = dict(calibration_info or {})
        spec.calibration.update(options.record())
        if corrected:
            shifts = correct_biases(reference, q, corrected, waveforms)
            spec.calibration["bias_shift_max"] = round(max(shifts.values()), 6)
        spec.calibration.setdefault("utterances", len(waveforms))
        spec.calibration.setdefault("seconds", round(sum(w.numel() for w in waveforms) / SAMPLE_RATE, 2))
    spec.dynamic_int8_linear = dynamic_linear(q)
    spec.attention_dtype = attention_dtype
    set_attention_dtype(q, attention_dtype)
    return q.eval(), spec