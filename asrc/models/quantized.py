"""Int8 model directories: ``quantization.yaml`` next to ``config.yaml`` + ``model.pth``.

``quantization.yaml`` (:class:`QuantizationSpec`) records which modules of the float model
were replaced by int8 ones (:mod:`asrc.models.int8`, torch's dynamic int8 ``Linear``);
:func:`build_quantized` rebuilds that module structure from it so that the int8 state dict
loads, which is what :func:`asrc.models.load` does for such a directory. How a float model is
quantized (calibration, conversion) is :mod:`asrc.quant`'s.
"""

import contextlib
import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
import yaml
from torch import nn

from asrc.core.config_files import check_known_keys, read_yaml_mapping
from asrc.core.files import atomic_write
from asrc.errors import AsrcError, CheckpointError
from asrc.models.config import Wav2Vec2Config
from asrc.models.int8 import DynamicInt8Linear, FoldedPositionalConv, Int8Conv1d, activation_qmax
from asrc.models.io import CONFIG_NAME, QUANT_NAME, read_model_dir, read_state_dict, save_model_dir
from asrc.models.wav2vec2 import PositionalConv, Wav2Vec2CTC

MODES = {
    "dynamic": "int8 Linear layers (dynamic activations), positional-conv weight norm folded, convs float",
    "static-pos": "dynamic + calibrated static int8 positional conv",
    "static-conv": "static-pos + calibrated static int8 CNN layers 2..N (fastest, smallest; costs accuracy)",
    "qat": "the static-conv structure with activation scales learned in quantization-aware training",
}
FORMAT_VERSION = 1


def _is_names(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


#: How the attention products of an int8 model are computed (QuantizationSpec.attention_dtype).
ATTENTION_DTYPES = ("float32", "bfloat16")

# quantization.yaml keys whose type is checked on loading: (check, what the value must be).
_SPEC_TYPES = {
    "dynamic_int8_linear": (_is_names, "a list of module names"),
    "static_int8_conv": (_is_names, "a list of module names"),
    "per_frame_int8_conv": (_is_names, "a list of module names"),
    "folded_weight_norm": (_is_names, "a list of module names"),
    "engine": (lambda v: isinstance(v, str), "a string"),
    "activation_reduce_range": (lambda v: isinstance(v, bool), "true or false"),
    "calibration": (lambda v: isinstance(v, dict), "a mapping"),
    "format_version": (lambda v: type(v) is int, "an integer"),
    "attention_dtype": (lambda v: v in ATTENTION_DTYPES, f"one of {list(ATTENTION_DTYPES)}"),
}


@dataclass
class QuantizationSpec:
    """The contents of ``quantization.yaml``: which modules were replaced by what."""

    mode: str
    # Module names, as in ``model.named_modules()``.
    dynamic_int8_linear: List[str] = field(default_factory=list)
    static_int8_conv: List[str] = field(default_factory=list)
    # Those of static_int8_conv whose input is quantized per output frame (Int8Conv1d.per_frame).
    per_frame_int8_conv: List[str] = field(default_factory=list)
    folded_weight_norm: List[str] = field(default_factory=list)
    # Quantized kernels are packed for this backend of ``torch.backends.quantized``.
    engine: str = "x86"
    activation_reduce_range: bool = True
    # The attention products (q k^T, softmax, . v): activations times activations, never int8;
    # bfloat16 runs them on a CPU's bf16 units (AMX, AVX512-BF16), set_attention_dtype.
    attention_dtype: str = "float32"
    calibration: Dict = field(default_factory=dict)
    torch_version: str = str(torch.__version__)
    format_version: int = FORMAT_VERSION

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)

    @classmethod
    def from_yaml_file(cls, path) -> "QuantizationSpec":
        d = read_yaml_mapping(path, error=AsrcError)
        check_known_keys(d, (f.name for f in dataclasses.fields(cls)), str(path), error=AsrcError)
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
def quiet_ao():
    """torch 2.9 flags ``torch.ao.quantization`` as deprecated on every call; asrc pins torch 2.9."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        yield


def set_module(model: nn.Module, name: str, module: nn.Module):
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, module)


def set_engine(engine: str):
    if engine not in torch.backends.quantized.supported_engines:
        raise AsrcError(f"quantized engine {engine!r} is not supported by this torch build "
                        f"(supported: {torch.backends.quantized.supported_engines})")
    torch.backends.quantized.engine = engine


def fold_weight_norm(model: Wav2Vec2CTC) -> List[str]:
    """Replace every :class:`PositionalConv` by a :class:`FoldedPositionalConv` in place."""
    names = [n for n, m in model.named_modules() if isinstance(m, PositionalConv)]
    for name in names:
        set_module(model, name, FoldedPositionalConv.from_positional_conv(model.get_submodule(name)))
    return names


def build_quantized(config: Wav2Vec2Config, spec: QuantizationSpec, tokens=None) -> Wav2Vec2CTC:
    """The module structure described by ``spec`` with placeholder values (to load a state dict into)."""
    set_engine(spec.engine)
    model = Wav2Vec2CTC(config, tokens).eval()
    folded = fold_weight_norm(model)
    if sorted(folded) != sorted(spec.folded_weight_norm):
        raise CheckpointError(f"{QUANT_NAME}: folded_weight_norm {spec.folded_weight_norm} does not match the "
                              f"model's positional convs {folded}")
    stray = sorted(set(spec.per_frame_int8_conv) - set(spec.static_int8_conv))
    if stray:
        raise CheckpointError(f"{QUANT_NAME}: per_frame_int8_conv names {stray}, not in static_int8_conv")
    for name in spec.static_int8_conv:
        try:
            conv = model.get_submodule(name)
        except AttributeError as e:
            raise CheckpointError(f"{QUANT_NAME}: static_int8_conv names {name!r}, not a module of this model") from e
        if not isinstance(conv, nn.Conv1d):
            raise CheckpointError(f"{QUANT_NAME}: static_int8_conv names {name!r}, a {type(conv).__name__}")
        set_module(model, name, Int8Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0],
                                            conv.padding[0], conv.groups, conv.bias is not None,
                                            activation_qmax(spec.activation_reduce_range),
                                            per_frame=name in spec.per_frame_int8_conv))
    linear = {n for n, m in model.named_modules() if type(m) is nn.Linear}
    missing = sorted(set(spec.dynamic_int8_linear) - linear)
    if missing:
        raise CheckpointError(f"{QUANT_NAME}: dynamic_int8_linear names {missing}, not Linear layers of this model")
    quantize_linear_dynamic(model, spec.dynamic_int8_linear)
    set_attention_dtype(model, spec.attention_dtype)
    return model.eval()


def set_attention_dtype(model: nn.Module, dtype: str) -> None:
    """Compute every attention product of ``model`` in ``dtype`` (one of :data:`ATTENTION_DTYPES`):
    queries, keys and values are cast to it for ``scaled_dot_product_attention`` and the result
    back to float32; the projections around it are unchanged."""
    from asrc.models.wav2vec2 import SelfAttention

    if dtype not in ATTENTION_DTYPES:
        raise AsrcError(f"attention dtype {dtype!r} is not one of {list(ATTENTION_DTYPES)}")
    for m in model.modules():
        if isinstance(m, SelfAttention):
            m.compute_dtype = None if dtype == "float32" else getattr(torch, dtype)


def quantize_linear_dynamic(model: nn.Module, names) -> None:
    """Replace the ``nn.Linear`` modules ``names`` of ``model`` by dynamic int8 ones (per-channel
    int8 weights; :class:`asrc.models.int8.DynamicInt8Linear`, torch's module with a oneDNN
    fast path)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with quiet_ao():
        quantize_dynamic(model, {n: per_channel_dynamic_qconfig for n in names}, dtype=torch.qint8,
                         mapping={nn.Linear: DynamicInt8Linear}, inplace=True)


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
