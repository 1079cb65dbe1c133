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
    calibration (histogram observers over a few utterances). Needs calibration audio.
``static-conv``
    ``static-pos`` plus static int8 CNN layers 2..N (the first sees the raw waveform and
    stays float). The norms and GELUs between the convs stay float (torch's int8 GELU is
    slower than dequantize + float GELU). Fastest and smallest, but per-tensor 8-bit CNN
    activations cost accuracy (measured on AN4: see below). Needs calibration audio.

Static activations use 8 bits on CPUs with VNNI and 7 bits elsewhere (see ``quantize_model``).

Measured on this project's AN4 teacher (6 pre-LN layers x 192, 128-channel CNN, 13 epochs;
130 test utterances, greedy CTC, calibration: 16 training utterances), CER / WER:

=============  =============  ============  ======================  ==========================
mode           CER %          WER %         logit cosine (min)      frames with same argmax
=============  =============  ============  ======================  ==========================
float          28.81          53.30
dynamic        28.77          53.43         0.99998 (0.99998)       99.71 %
static-pos     28.50          52.39         0.99998 (0.99997)       99.66 %
static-conv    34.04          57.96         0.99266 (0.98365)       93.87 %
=============  =============  ============  ======================  ==========================

Any single CNN layer in int8 costs about as much as all of them (its output is off by 3.9 %
relative, up to 18 % in low-range channels: per-tensor 8-bit activations are too coarse for
those channels), while the int8 positional conv alone is as harmless as ``dynamic``.

What was quantized is recorded in ``quantization.yaml`` (:class:`QuantizationSpec`) next to
``config.yaml``; :func:`load_quantized` rebuilds the same module structure from it and loads
the int8 state dict, which is what ``asrc.models.load`` does for such a directory.
"""

import contextlib
import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import yaml
from torch import Tensor, nn

from asrc.core.constants import SAMPLE_RATE
from asrc.core.files import atomic_write
from asrc.errors import AsrcError, CheckpointError
from asrc.models.config import Wav2Vec2Config
from asrc.models.io import CONFIG_NAME, QUANT_NAME, read_model_dir, read_state_dict, save_model_dir
from asrc.models.wav2vec2 import PositionalConv, Wav2Vec2CTC
from asrc.quant.modules import FoldedPositionalConv, Int8Conv1d, activation_observer

MODES = {
    "dynamic": "int8 Linear layers (dynamic activations), positional-conv weight norm folded, convs float",
    "static-pos": "dynamic + calibrated static int8 positional conv",
    "static-conv": "static-pos + calibrated static int8 CNN layers 2..N (fastest, smallest; costs accuracy)",
}
FORMAT_VERSION = 1


def _is_names(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


# quantization.yaml keys whose type is checked on loading: (check, what the value must be).
_SPEC_TYPES = {
    "dynamic_int8_linear": (_is_names, "a list of module names"),
    "static_int8_conv": (_is_names, "a list of module names"),
    "folded_weight_norm": (_is_names, "a list of module names"),
    "engine": (lambda v: isinstance(v, str), "a string"),
    "activation_reduce_range": (lambda v: isinstance(v, bool), "true or false"),
    "calibration": (lambda v: isinstance(v, dict), "a mapping"),
    "format_version": (lambda v: type(v) is int, "an integer"),
}


@dataclass
class QuantizationSpec:
    """The contents of ``quantization.yaml``: which modules were replaced by what."""

    mode: str
    # Module names, as in ``model.named_modules()``.
    dynamic_int8_linear: List[str] = field(default_factory=list)
    static_int8_conv: List[str] = field(default_factory=list)
    folded_weight_norm: List[str] = field(default_factory=list)
    # Quantized kernels are packed for this backend of ``torch.backends.quantized``.
    engine: str = "x86"
    activation_reduce_range: bool = True
    calibration: Dict = field(default_factory=dict)
    torch_version: str = str(torch.__version__)
    format_version: int = FORMAT_VERSION

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)

    @classmethod
    def from_yaml_file(cls, path) -> "QuantizationSpec":
        with open(path, encoding="utf-8") as f:
            try:
                d = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise AsrcError(f"{path}: not valid YAML: {e}") from e
        if not isinstance(d, dict):
            raise AsrcError(f"{path}: expected a mapping of keys, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AsrcError(f"{path}: unknown keys {unknown} (known: {sorted(known)})")
        wrong = [f"{k}={d[k]!r} (expected {what})" for k, (ok, what) in _SPEC_TYPES.items() if k in d and not ok(d[k])]
        if wrong:
            raise AsrcError(f"{path}: {'; '.join(wrong)}")
        if d.get("mode") not in MODES:
            raise AsrcError(f"{path}: mode={d.get('mode')!r} is not one of {sorted(MODES)}")
        if d.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise AsrcError(f"{path}: format_version {d['format_version']} is newer than this asrc reads "
                            f"({FORMAT_VERSION})")
        return cls(**d)


@contextlib.contextmanager
def _quiet():
    """torch 2.9 flags ``torch.ao.quantization`` as deprecated on every call; asrc pins torch 2.9."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        yield


def _set_module(model: nn.Module, name: str, module: nn.Module):
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


def set_engine(engine: str):
    if engine not in torch.backends.quantized.supported_engines:
        raise AsrcError(f"quantized engine {engine!r} is not supported by this torch build "
                        f"(supported: {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = engine


def cpu_has_vnni() -> bool:
    """True when this x86 CPU has VNNI (AVX512-VNNI or AVX-VNNI): its int8 dot products
    accumulate in 32 bits, so full 8-bit activations cannot saturate."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_vnni", "avx_vnni"})
    except OSError:
        pass
    return False


def default_engine() -> str:
    engines = torch.backends.quantized.supported_engines
    return "x86" if "x86" in engines else torch.backends.quantized.engine


def fold_weight_norm(model: Wav2Vec2CTC) -> List[str]:
    """Replace every :class:`PositionalConv` by a :class:`FoldedPositionalConv` in place."""
    names = [n for n, m in model.named_modules() if isinstance(m, PositionalConv)]
    for name in names:
        _set_module(model, name, FoldedPositionalConv.from_positional_conv(model.get_submodule(name)))
    return names


def static_conv_targets(model: Wav2Vec2CTC, mode: str) -> List[str]:
    """Names of the ``nn.Conv1d`` modules that a static ``mode`` quantizes (after folding)."""
    names = [n + ".conv" for n, m in model.named_modules() if isinstance(m, FoldedPositionalConv)]
    if mode == "static-conv":
        names = [f"feature_extractor.conv_layers.{i}.conv"
                 for i in range(1, len(model.feature_extractor.conv_layers))] + names
    return names


def _dynamic_linear(model: nn.Module) -> List[str]:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    with _quiet():
        quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in names}, dtype=torch.qint8, inplace=True)
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
                     reduce_range: bool) -> Dict[str, tuple]:
    """Run ``waveforms`` one by one (no padding to skew the ranges) and observe every conv's
    input and output."""
    observers = {n: (activation_observer(reduce_range), activation_observer(reduce_range)) for n in names}
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
                   engine: Optional[str] = None, reduce_range: Optional[bool] = None,
                   calibration_info: Optional[dict] = None):
    """Quantized copy of ``model`` (the float model is left untouched).

    Args:
        model: a float :class:`Wav2Vec2CTC`.
        mode: one of :data:`MODES`.
        calibration: for the static modes: waveforms (list of 1-D float32 16 kHz tensors, or a
            ``[batch, sample]`` tensor of unpadded rows), e.g. from :func:`asrc.core.audio.read_waveforms`.
        engine: quantized backend (default ``x86``: fbgemm + oneDNN).
        reduce_range: 7-bit activations for static convs, which CPUs without VNNI need (their
            16-bit intermediate sums can saturate with 8 bits). Default: 8 bits when this CPU
            has VNNI, else 7; the choice is recorded, and loading on a CPU without VNNI a model
            made with 8 bits warns.
        calibration_info: what to record about the calibration data in ``quantization.yaml``.

    Returns:
        ``(quantized_model, QuantizationSpec)``; the model is in eval mode.
    """
    import copy

    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {sorted(MODES)}")
    engine = engine or default_engine()
    set_engine(engine)
    if reduce_range is None:
        reduce_range = not cpu_has_vnni()
    q = copy.deepcopy(model).eval()
    spec = QuantizationSpec(mode=mode, engine=engine, activation_reduce_range=reduce_range)
    spec.folded_weight_norm = fold_weight_norm(q)
    if mode.startswith("static-"):
        if calibration is None:
            raise ValueError(f"mode {mode!r} needs calibration waveforms (asrc-quantize --calib DATA_DIR)")
        waveforms = _as_waveforms(calibration)
        names = static_conv_targets(q, mode)
        observers = _calibrate_convs(q, names, waveforms, reduce_range)
        for name in names:
            _set_module(q, name, Int8Conv1d.from_float(q.get_submodule(name), *observers[name]))
        spec.static_int8_conv = names
        spec.calibration = dict(calibration_info or {})
        spec.calibration.setdefault("utterances", len(waveforms))
        spec.calibration.setdefault("seconds", round(sum(w.numel() for w in waveforms) / SAMPLE_RATE, 2))
    spec.dynamic_int8_linear = _dynamic_linear(q)
    return q.eval(), spec


def build_quantized(config: Wav2Vec2Config, spec: QuantizationSpec, tokens=None) -> Wav2Vec2CTC:
    """The module structure described by ``spec`` with placeholder values (to load a state dict into)."""
    set_engine(spec.engine)
    model = Wav2Vec2CTC(config, tokens).eval()
    folded = fold_weight_norm(model)
    if sorted(folded) != sorted(spec.folded_weight_norm):
        raise CheckpointError(f"{QUANT_NAME}: folded_weight_norm {spec.folded_weight_norm} does not match the "
                              f"model's positional convs {folded}")
    for name in spec.static_int8_conv:
        try:
            conv = model.get_submodule(name)
        except AttributeError as e:
            raise CheckpointError(f"{QUANT_NAME}: static_int8_conv names {name!r}, not a module of this model") from e
        if not isinstance(conv, nn.Conv1d):
            raise CheckpointError(f"{QUANT_NAME}: static_int8_conv names {name!r}, a {type(conv).__name__}")
        _set_module(model, name, Int8Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0],
                                            conv.padding[0], conv.groups, conv.bias is not None))
    linear = {n for n, m in model.named_modules() if type(m) is nn.Linear}
    missing = sorted(set(spec.dynamic_int8_linear) - linear)
    if missing:
        raise CheckpointError(f"{QUANT_NAME}: dynamic_int8_linear names {missing}, not Linear layers of this model")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with _quiet():
        quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in spec.dynamic_int8_linear},
                         dtype=torch.qint8, inplace=True)
    return model.eval()


def save_quantized(model: Wav2Vec2CTC, spec: QuantizationSpec, out_dir, tokens: Optional[Sequence[str]] = None):
    """Write ``config.yaml``, ``model.pth`` (int8 state dict), ``tokens.txt``, then ``quantization.yaml``."""
    out = Path(out_dir)
    # A stale quantization.yaml must not mark the directory while the rest is rewritten.
    (out / QUANT_NAME).unlink(missing_ok=True)
    save_model_dir(model, out, tokens)
    # Written last: its presence is what marks the directory as quantized.
    with atomic_write(out / QUANT_NAME) as f:
        f.write(spec.to_yaml())


def load_quantized(model_dir, map_location="cpu") -> Wav2Vec2CTC:
    """Load a directory written by :func:`save_quantized`; the model is in eval mode.

    Quantized kernels run on the CPU only; ``map_location`` other than CPU is an error.
    """
    model_dir = Path(model_dir)
    if str(map_location) != "cpu":
        raise AsrcError(f"{model_dir}: int8 models run on the CPU only (map_location={map_location!r})")
    spec = QuantizationSpec.from_yaml_file(model_dir / QUANT_NAME)
    config, tokens, weights = read_model_dir(model_dir)
    if spec.static_int8_conv and not spec.activation_reduce_range and not cpu_has_vnni():
        warnings.warn(f"{model_dir}: int8 convs calibrated for 8-bit activations (a VNNI CPU); this CPU has no "
                      f"VNNI and may saturate int16 sums: re-quantize here for 7-bit activations")
    model = build_quantized(config, spec, tokens)
    state = read_state_dict(weights)
    missing = sorted(set(model.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(model.state_dict()))
    if missing or unexpected:
        raise CheckpointError(f"{weights}: does not match {QUANT_NAME} + {CONFIG_NAME}: missing keys {missing[:10]}, "
                              f"unexpected keys {unexpected[:10]}")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{weights}: {e}") from e
    model.quantization = spec
    return model.eval()
