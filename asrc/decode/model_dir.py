"""The model a decoding uses: an asrc model directory, or one exported from an ESPnet experiment."""

import logging
from pathlib import Path

import torch

from asrc.errors import AsrcError

__all__ = ["frame_seconds", "load_model", "model_footprint", "resolve_model_dir"]

log = logging.getLogger(__name__)


def resolve_model_dir(model, out_dir) -> Path:
    """An asrc model directory for ``model``: itself, or an export of an ESPnet experiment.

    Raises:
        FileNotFoundError: ``model`` does not exist.
        AsrcError: neither a model directory nor an ESPnet experiment, or the ESPnet exporter
            is not available.
    """
    from asrc.models.io import is_espnet_experiment, is_model_dir

    model = Path(model)
    if not model.exists():
        raise FileNotFoundError(f"model {model} does not exist")
    if is_model_dir(model):
        return model
    if is_espnet_experiment(model):
        exported = Path(out_dir) / "model"
        checkpoints = [p.stat().st_mtime for p in model.glob("*.pth")]
        if is_model_dir(exported) and (exported / "model.pth").stat().st_mtime >= max(checkpoints, default=0):
            log.info("using the model exported earlier from %s: %s", model, exported)
            return exported
        try:
            from asrc.models.espnet_dir import export_model_dir
        except ImportError as e:
            raise AsrcError(
                f"{model} is an ESPnet experiment directory (config.yaml with ESPnet keys), but "
                f"asrc.models.espnet_dir.export_model_dir is not available to convert it ({e}); "
                f"pass an asrc model directory (config.yaml + model.pth + tokens.txt)"
            ) from e
        export_model_dir(model, exported)
        if not is_model_dir(exported):
            raise AsrcError(f"exporting ESPnet experiment {model} did not produce a model directory in {exported}")
        return exported
    missing = [name for name in ("config.yaml", "model.pth") if not (model / name).is_file()]
    raise AsrcError(
        f"{model} is not a model directory (no {' and no '.join(missing)}; needs config.yaml and model.pth) "
        f"nor an ESPnet experiment directory"
    )


def model_footprint(model_dir: Path, model: torch.nn.Module) -> dict:
    """Parameter count and size on disk (``model.pth``, or all files if there is none) in MB."""
    from asrc.models import num_parameters

    weights = model_dir / "model.pth"
    files = [weights] if weights.is_file() else [p for p in model_dir.rglob("*") if p.is_file()]
    return {
        "dir": str(model_dir),
        "params": int(num_parameters(model)),
        "size_mb": sum(p.stat().st_size for p in files) / 1e6,
    }


def load_model(model_dir: Path):
    """``asrc.models.load`` plus the checks decoding needs (a token list)."""
    from asrc import models

    model = models.load(model_dir, map_location="cpu")
    if getattr(model, "tokens", None) is None:
        raise AsrcError(f"{model_dir}: the model has no token list (tokens.txt); cannot turn outputs into text")
    return model.eval()


def frame_seconds(model) -> float:
    """Seconds between two output frames of ``model``: its front end's total stride (20 ms for
    wav2vec 2.0's, the stride assumed for a model without a config)."""
    from asrc.core.constants import SAMPLE_RATE

    return getattr(getattr(model, "config", None), "total_stride", 320) / SAMPLE_RATE
