"""Quantize a model directory into another: what ``asrc-quantize`` does, as one function.

    summary = quantize_dir("exp/student/model", "exp/student_int8/model", "static-pos", calib="data/dev")
"""

from pathlib import Path
from typing import Optional

import torch

from asrc.core.audio import read_waveforms
from asrc.errors import AsrcError
from asrc.models.io import QUANT_NAME, WEIGHTS_NAME, is_model_dir
from asrc.models.loader import load
from asrc.models.quantized import save_quantized
from asrc.quant.agreement import agreement
from asrc.quant.calibrate import ConvQuantOptions
from asrc.quant.quantize import quantize_model

__all__ = ["quantize_dir"]


def quantize_dir(src, out, mode: str = "dynamic", calib=None, calib_utts: int = 16, engine: Optional[str] = None,
                 activation_bits: int = 8, check=None, overwrite: bool = False,
                 options: Optional[ConvQuantOptions] = None, checkpoint: Optional[str] = None) -> dict:
    """Quantize the float model directory ``src`` into ``out`` (:func:`asrc.quant.quantize_model`).

    Args:
        mode: one of :data:`asrc.quant.MODES`; the static modes need ``calib``.
        calib: a data directory whose audio (``calib_utts`` utterances spread over ``wav.scp``)
            calibrates the static modes.
        engine: torch quantized engine (default x86).
        activation_bits: 8 (default) or 7 for static-mode activations (7: int8 speed on CPUs
            without VNNI, at a cost in accuracy).
        check: a data directory on which to compare the reloaded int8 model with the float one.
        overwrite: replace a non-empty ``out``.
        options: how static convs are quantized (:class:`asrc.quant.calibrate.ConvQuantOptions`).
        checkpoint: for ``mode="qat"``, where ``src`` is an ``asrc-train`` experiment trained with
            a ``qat`` section: which checkpoint to convert (default as ``asrc.models.espnet_dir``).

    Returns:
        ``{"spec": QuantizationSpec, "mb_in": float, "mb_out": float, "agreement": dict or None}``
        (sizes of ``model.pth`` in MB; agreement as :func:`asrc.quant.agreement.agreement`).
    """
    src, out = Path(src), Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise AsrcError(f"{out}: exists and is not empty (use --overwrite)")
    if mode == "qat":
        return _convert_qat(src, out, checkpoint, engine, check)
    if checkpoint is not None:
        raise AsrcError("--checkpoint names a checkpoint of a QAT experiment (--mode qat)")
    if not is_model_dir(src):
        raise FileNotFoundError(f"{src}: not a model directory (config.yaml + model.pth)")
    if (src / QUANT_NAME).is_file():
        raise AsrcError(f"{src}: already quantized ({QUANT_NAME}); quantize the float model")
    if mode.startswith("static-") and not calib:
        raise AsrcError(f"--mode {mode} needs --calib DATA_DIR (a data dir with wav.scp)")
    model = load(src)
    waveforms, info = None, {}
    if calib:
        waveforms, info = read_waveforms(calib, max_utterances=calib_utts)
    qmodel, spec = quantize_model(model, mode, waveforms, engine=engine, reduce_range=activation_bits == 7,
                                  calibration_info=info, options=options)
    spec.calibration.setdefault("source_model", str(src))
    save_quantized(qmodel, spec, out)
    return _summary(model, spec, out, (src / WEIGHTS_NAME).stat().st_size / 1e6, check)


def _summary(model, spec, out: Path, mb_in: float, check) -> dict:
    summary = {"spec": spec, "mb_in": mb_in, "mb_out": (out / WEIGHTS_NAME).stat().st_size / 1e6, "agreement": None}
    if check:
        waves, _ = read_waveforms(check, max_utterances=50, max_seconds=600)
        reloaded = load(out)
        with torch.inference_mode():
            summary["agreement"] = agreement(model, reloaded, waves, blank=0)
    return summary


def _convert_qat(src: Path, out: Path, checkpoint, engine, check) -> dict:
    from asrc.quant.qat import convert_experiment

    float_model, qmodel, spec = convert_experiment(src, checkpoint, engine=engine)
    save_quantized(qmodel, spec, out)
    mb_in = sum(p.numel() * p.element_size() for p in float_model.state_dict().values()) / 1e6
    return _summary(float_model, spec, out, mb_in, check)
