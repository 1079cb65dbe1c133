"""Model directories: ``config.yaml`` + ``model.pth`` (+ ``tokens.txt``).

``config.yaml`` is a :class:`Wav2Vec2Config`; ``model.pth`` its ``state_dict``; ``tokens.txt``
one token per line, the line number being the CTC output index. A quantized model directory
also holds ``quantization.yaml`` (:mod:`asrc.models.quantized`). :func:`asrc.models.load`
loads any kind (:mod:`asrc.models.loader`).
"""

import warnings
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import torch
import yaml

from asrc.core.files import atomic_torch_save, atomic_write
from asrc.core.tables import read_tokens, write_tokens
from asrc.errors import CheckpointError
from asrc.models.config import Wav2Vec2Config
from asrc.models.wav2vec2 import Wav2Vec2CTC

CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.pth"
TOKENS_NAME = "tokens.txt"
QUANT_NAME = "quantization.yaml"
#: Keys of an ESPnet ``config.yaml`` that an asrc ``config.yaml`` (a Wav2Vec2Config) never has.
ESPNET_CONFIG_KEYS = ("token_list", "encoder", "encoder_conf", "model_conf", "frontend", "ctc_conf")


def is_espnet_experiment(path) -> bool:
    """Whether ``path`` holds an ESPnet ``config.yaml`` (ESPnet keys, readable YAML)."""
    cfg = Path(path) / "config.yaml"
    if not cfg.is_file():
        return False
    try:
        with open(cfg, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and any(k in data for k in ESPNET_CONFIG_KEYS)


def _first(items: list, n: int = 8) -> str:
    """``items`` in a message: all of a short list, the first ``n`` and a count of a long one."""
    return f"{items}" if len(items) <= n else f"{items[:n]} and {len(items) - n} more"


def load_state_dict_strict(model: torch.nn.Module, state_dict: dict, source: str):
    """``load_state_dict`` that names the missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in sorted(set(own) & set(state_dict)) if tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_first(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches {_first(mismatched)}")
        raise CheckpointError(f"{source}: " + "; ".join(parts))
    model.load_state_dict(state_dict)


def _torch_file_damage(path: Path, error: Exception) -> str:
    """What is wrong with a file that ``torch.load`` failed on, as far as its bytes tell."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(2)
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if head == b"PK":  # torch.save's zip format; the central directory is written last
        if not zipfile.is_zipfile(path):
            return (f"truncated PyTorch checkpoint (a zip archive of {size} bytes without the central directory "
                    "that ends it)")
        try:
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            return f"damaged zip archive ({e})"
        if bad is not None:
            return f"damaged zip archive (member {bad} fails its CRC check)"
        return f"torch.load cannot read it: {detail}"
    if head[:1] == b"\x80":  # a pickle: torch's legacy format and old fairseq checkpoints
        return f"truncated or damaged legacy (pickle) checkpoint: {detail}"
    return "not a PyTorch checkpoint (neither a zip archive nor a pickle)"


def torch_load(path, **kwargs):
    """``torch.load(path, **kwargs)``; a damaged or foreign file is a :class:`CheckpointError` saying
    what is wrong with it. ``ImportError`` (a pickle that needs a module) passes through."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            # torch's own loader of quantized tensors touches TypedStorage and warns on every int8
            # checkpoint; nothing a user can act on.
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
            return torch.load(path, **kwargs)
    except ImportError:
        raise
    except Exception as e:  # zip, pickle, EOF and OS errors alike: all mean this file
        raise CheckpointError(f"{path}: {_torch_file_damage(path, e)}") from e


def _float_tensors(name: str, value):
    """``(name, float tensor)`` of a state-dict entry: a tensor (an int8 one dequantized: its scales
    are what can be NaN), or the tensors in the tuple of a packed int8 module."""
    if isinstance(value, torch.Tensor):
        if value.is_quantized:
            yield name, value.dequantize()
        elif value.is_floating_point() or value.is_complex():
            yield name, value
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            yield from _float_tensors(f"{name}[{i}]", v)


def check_finite(state: dict, source) -> None:
    """Raise a :class:`CheckpointError` naming ``source`` and the first tensor of ``state`` with NaN
    or Inf values (and how many, and how many tensors have some): such a model outputs garbage."""
    bad = [(name, t) for key, value in state.items() for name, t in _float_tensors(key, value)
           if not bool(torch.isfinite(t).all())]
    if bad:
        name, t = bad[0]
        n = int((~torch.isfinite(t)).sum())
        more = {1: "", 2: "; 1 more tensor has some"}.get(len(bad), f"; {len(bad) - 1} more tensors have some")
        raise CheckpointError(f"{source}: {name} has {n} NaN/Inf values (of {t.numel()}){more}; the weights are "
                              f"damaged or come from a diverged training")


def read_espnet_state(path, map_location="cpu") -> dict:
    """The model's state dict in an ESPnet checkpoint file: a plain state dict (the ``*.pth`` the
    trainer keeps or averages), the trainer's resume state (``checkpoint.pth``: its ``model``) or a
    DeepSpeed one (its ``module``); checked as :func:`read_state_dict` checks."""
    path = Path(path)
    # the resume state holds optimizer and reporter objects besides tensors
    state = torch_load(path, map_location=map_location, weights_only=path.name != "checkpoint.pth")
    if isinstance(state, dict) and isinstance(state.get("module"), dict):  # DeepSpeed, as ESPnet reads it
        state = state["module"]
    if isinstance(state, dict) and isinstance(state.get("model"), dict) and "optimizers" in state:
        state = state["model"]
    return _checked_state(state, path, True)


def read_state_dict(path, map_location="cpu", finite: bool = True) -> dict:
    """A ``state_dict`` saved with ``torch.save`` (tensors by name), checked to be one and (unless
    ``finite=False``) to hold no NaN or Inf (:func:`check_finite`)."""
    return _checked_state(torch_load(path, map_location=map_location, weights_only=True), path, finite)


def _checked_state(state, path, finite: bool) -> dict:
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict (parameter name -> tensor), got {type(state).__name__}")
    if finite:
        check_finite(state, path)
    return state


def _is_quantized_state(state: dict) -> bool:
    """Whether a state dict holds int8 modules (asrc-quantize output)."""
    return any(k.endswith("_packed_params") or (isinstance(v, torch.Tensor) and v.is_quantized)
               for k, v in state.items())


def is_model_dir(path) -> bool:
    p = Path(path)
    return (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()


def save_model_dir(model: Wav2Vec2CTC, out_dir, tokens: Optional[Sequence[str]] = None):
    """Write ``config.yaml``, ``model.pth`` and (when known) ``tokens.txt`` to ``out_dir`` (a float
    model: a ``quantization.yaml`` left there by an int8 model is removed, or the folder would
    not load)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / QUANT_NAME).unlink(missing_ok=True)
    tokens = tokens if tokens is not None else model.tokens
    with atomic_write(out / CONFIG_NAME) as f:
        f.write(model.config.to_yaml())
    atomic_torch_save(model.state_dict(), out / WEIGHTS_NAME)
    if tokens is not None:
        write_tokens(out / TOKENS_NAME, tokens)


def load_config(model_dir) -> Wav2Vec2Config:
    path = Path(model_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no {CONFIG_NAME}; not an asrc model directory")
    return Wav2Vec2Config.from_yaml(path, allow_empty=False)


def read_model_dir(model_dir):
    """``(config, tokens or None, weights path)`` of a model directory, checked for consistency."""
    model_dir = Path(model_dir)
    config = load_config(model_dir)
    weights = model_dir / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"{model_dir}: no {WEIGHTS_NAME}")
    tokens_path = model_dir / TOKENS_NAME
    tokens = read_tokens(tokens_path) if tokens_path.is_file() else None
    if tokens is not None and len(tokens) != config.vocab_size:
        raise CheckpointError(f"{tokens_path}: {len(tokens)} tokens but config.yaml has vocab_size={config.vocab_size}")
    return config, tokens, weights


def load_float(model_dir, map_location="cpu") -> Wav2Vec2CTC:
    """Load a float model directory; returns the model in eval mode with ``.tokens`` set (or None)."""
    model_dir = Path(model_dir)
    config, tokens, weights = read_model_dir(model_dir)
    model = Wav2Vec2CTC(config, tokens)
    state = read_state_dict(weights, map_location)
    if _is_quantized_state(state):
        raise CheckpointError(f"{weights}: int8 weights (asrc-quantize output), but {model_dir} has no {QUANT_NAME}; "
                              f"put back the {QUANT_NAME} written with it, or quantize the float model again")
    load_state_dict_strict(model, state, str(weights))
    return model.eval()
