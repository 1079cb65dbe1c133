"""Quantize a model directory into another: what ``asrc-quantize`` does, as one function.

    summary = quantize_dir("exp/student/model", "exp/student_int8/model", "static-pos", calib="data/dev")
"""

import shutil
from pathlib import Path
from typing import Optional

import torch

from asrc.core.audio import read_waveforms
from asrc.core.constants import SAMPLE_RATE
from asrc.errors import AsrcError
from asrc.models.io import QUANT_NAME, WEIGHTS_NAME, is_espnet_experiment, is_model_dir
from asrc.models.loader import load
from asrc.models.quantized import save_quantized, set_attention_dtype
from asrc.quant.agreement import agreement
from asrc.quant.calibrate import ConvQuantOptions
from asrc.quant.quantize import quantize_model

__all__ = ["quantize_dir"]


def quantize_dir(src, out, mode: str = "dynamic", calib=None, calib_utts: int = 16, engine: Optional[str] = None,
                 activation_bits: int = 8, check=None, overwrite: bool = False,
                 options: Optional[ConvQuantOptions] = None, checkpoint: Optional[str] = None,
                 attention_dtype: str = "float32") -> dict:
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
        attention_dtype: dtype of the attention products (:func:`asrc.quant.quantize_model`).
        checkpoint: for ``mode="qat"``, where ``src`` is an ``asrc-train`` experiment trained with
            a ``qat`` section: which checkpoint to convert (default as ``asrc.models.espnet_dir``).

    Returns:
        ``{"spec": QuantizationSpec, "mb_in": float, "mb_out": float, "agreement": dict or None}``
        (sizes of ``model.pth`` in MB; agreement as :func:`asrc.quant.agreement.agreement`).
    """
    src, out = Path(src), Path(out)
    # Every input is checked before anything is written: a failure leaves no OUT to block a rerun.
    if isinstance(calib_utts, bool) or not isinstance(calib_utts, int) or calib_utts < 1:
        raise AsrcError(f"--calib-utts must be an integer >= 1, got {calib_utts!r}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise AsrcError(f"{out}: exists and is not empty (use --overwrite)")
    if mode != "qat" and checkpoint is not None:
        raise AsrcError("--checkpoint names a checkpoint of a QAT experiment (--mode qat)")
    for flag, data_dir in (("--calib", calib), ("--check", check)):
        if data_dir and not (Path(data_dir) / "wav.scp").is_file():
            raise AsrcError(f"{flag} {data_dir}: no wav.scp; {flag} needs a Kaldi-style data dir")
    check_waves = check_ids = None
    if check:
        check_waves, check_info = _read_audio("--check", check, max_utterances=50, max_seconds=600)
        check_ids = check_info["ids"]
    if mode == "qat":
        return _convert_qat(src, out, checkpoint, engine, check_waves, check_ids, check, attention_dtype)
    if not is_model_dir(src):
        if is_espnet_experiment(src):
            raise AsrcError(f"{src}: an asrc-train experiment, not a model directory: quantize the model it exported "
                            f"(asrc-train --export_model_dir; for a prune: run, the dense model), or convert a "
                            f"qat: run with --mode qat")
        raise FileNotFoundError(f"{src}: not a model directory (config.yaml + model.pth)")
    if (src / QUANT_NAME).is_file():
        raise AsrcError(f"{src}: already quantized ({QUANT_NAME}); quantize the float model")
    if mode.startswith("static-") and not calib:
        raise AsrcError(f"--mode {mode} needs --calib DATA_DIR (a data dir with wav.scp)")
    model = load(src)
    _check_long_enough(model, check_waves, check_ids, check)
    waveforms, info = None, {}
    if calib:
        waveforms, info = _read_audio("--calib", calib, max_utterances=calib_utts)
        info.pop("ids")  # quantization.yaml names the first few (first_utterances)
    qmodel, spec = quantize_model(model, mode, waveforms, engine=engine, reduce_range=activation_bits == 7,
                                  calibration_info=info, options=options, attention_dtype=attention_dtype)
    spec.calibration.setdefault("source_model", str(src))
    return _save_and_summarise(model, qmodel, spec, out, (src / WEIGHTS_NAME).stat().st_size / 1e6, check_waves)


def _check_long_enough(model, waves, ids, data_dir) -> None:
    """``--check`` utterances shorter than the model's receptive field are named before anything
    is written (the comparison failed after OUT was, naming neither the flag nor the utterance)."""
    if waves is None:
        return
    field = model.config.receptive_field
    short = [u for u, w in zip(ids, waves) if w.numel() < field]
    if short:
        raise AsrcError(f"--check {data_dir}: utterance(s) {short[:5]} shorter than the model's receptive field "
                        f"({field} samples, {field / SAMPLE_RATE:.3f} s); give a data dir of longer ones")


def _read_audio(flag: str, data_dir, **kwargs):
    """:func:`read_waveforms` of ``data_dir``; its errors name ``flag`` (``--calib``, ``--check``)."""
    try:
        return read_waveforms(data_dir, **kwargs)
    except AsrcError as e:
        raise AsrcError(f"{flag}: {e}") from e
    except OSError as e:  # an audio file missing or unreadable
        raise AsrcError(f"{flag}: {e.filename}: {e.strerror}" if e.filename else f"{flag}: {e}") from e


def _save_and_summarise(model, qmodel, spec, out: Path, mb_in: float, check_waves) -> dict:
    """Save ``qmodel`` to ``out`` and compare it, reloaded, with ``model`` on ``check_waves``; if
    either fails, an ``out`` this call created is removed (a rerun then starts clean)."""
    created = not out.exists()
    try:
        save_quantized(qmodel, spec, out)
        summary = {"spec": spec, "mb_in": mb_in, "mb_out": (out / WEIGHTS_NAME).stat().st_size / 1e6,
                   "agreement": None}
        if check_waves is not None:
            reloaded = load(out)
            with torch.inference_mode():
                summary["agreement"] = agreement(model, reloaded, check_waves, blank=0)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    return summary


def _convert_qat(src: Path, out: Path, checkpoint, engine, check_waves, check_ids=None, check=None,
                 attention_dtype: str = "float32") -> dict:
    from asrc.models.io import is_model_dir
    from asrc.quant.qat import convert_experiment

    if is_model_dir(src):
        raise AsrcError(f"--mode qat converts an asrc-train experiment trained with a qat: section; {src} is a "
                        f"model directory (quantize it post-training: --mode static-conv, static-pos or dynamic)")

    float_model, qmodel, spec = convert_experiment(src, checkpoint, engine=engine)
    spec.attention_dtype = attention_dtype
    set_attention_dtype(qmodel, attention_dtype)
    _check_long_enough(float_model, check_waves, check_ids, check)
    mb_in = sum(p.numel() * p.element_size() for p in float_model.state_dict().values()) / 1e6
    return _save_and_summarise(float_model, qmodel, spec, out, mb_in, check_waves)
