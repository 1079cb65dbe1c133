"""footprint: size and speed of teacher, students, int8 and ONNX variants and the transformers peer, side by side.

Usage:
    asrc-bench footprint --json exp/footprint.json --markdown exp/footprint.md --plot exp/footprint.png
    asrc-bench footprint --teacher exp/teacher/model --student exp/student/model \\
        --calib data/dev_clean --wav some_10s.flac --wer exp/wer.json --json exp/footprint.json
    asrc-bench footprint --tiny --runs 2          # seconds: a smoke test with tiny dimensions
    asrc-bench footprint --teacher T --student kd=S --no-peer --no-onnx --no-int8 \\
        --wer exp/wer.json --cer exp/cer.json --plot exp/pareto.png   # float models only, WER and CER

One process, one input (``--seconds`` of audio, default 10, batch 1), ``--threads`` threads
(default 2) for torch and onnxruntime alike, ``--warmup`` untimed runs per model, then
``--runs`` rounds in which every model runs once in turn (interleaved, so load from other
processes hits all of them alike); the median is reported.

Rows (names are what ``--wer`` and ``--cer`` keys refer to):

``teacher``            asrc, float32: wav2vec2-base architecture (random weights) or ``--teacher DIR``
``hf-peer``            transformers ``Wav2Vec2ForCTC`` at the teacher's architecture, float32 (random
                       weights; with a random teacher, the teacher gets the same weights through
                       ``asrc.models.import_hf`` so both compute the same function, checked)
``<student>``          float32 student: ``--student DIR`` (repeatable) or built from the teacher with
                       ``asrc.models.student.build_student`` for each ``--student-preset``
``<student>-int8``     the student through ``asrc.quant`` (first ``--int8-mode``, default static-pos),
                       saved, and timed as loaded back with ``asrc.models.load``; further
                       ``--int8-mode`` values add ``<student>-int8-<mode>`` rows (none: ``--no-int8``);
                       ``--int8-per-frame`` a ``-frame`` twin of each static-conv row (the CNN's
                       input ranges per frame: ``asrc-quantize --conv-activations per-frame``);
                       ``--int8-bf16-attention`` a ``-bf16att`` twin of each (attention in bfloat16)
``<student>-onnx``     onnxruntime, float32 export; ``<student>-onnx-int8``: its onnxruntime int8 graph
``<int8 row>-qdq``     onnxruntime, the asrc int8 row exported as QDQ (static int8 convs as
                       ``QLinearConv``, Linear layers as dynamic int8 MatMul; ``asrc.quant.export``)
``<name>``             ``--int8-student NAME=DIR``: an int8 model directory made elsewhere (a QAT
                       run's ``asrc-train --export_model_dir``), as loaded, plus its ``-qdq`` row
``hf-peer-onnx-int8``  the peer a user would otherwise deploy: the transformers model exported to
                       ONNX and quantized by onnxruntime's ``quantize_dynamic`` (the ``optimum``
                       dynamic recipe: int8 weights, uint8 activations quantized per call)

``--conv-calibration``, ``--percentile`` and ``--bias-correction`` choose how the static int8
convs of the ``<student>-int8*`` rows are quantized (``asrc.quant.calibrate``; speed does not
depend on them, ``--agreement`` and ``--wer`` do).

Columns: parameters, MB of the saved file(s), MACs for the input (convolutions and matrix
products, from the architecture), median latency, real-time factor, speed-up and size ratio
against ``teacher``. ``--wer`` adds WER (``name=WER,...`` or a JSON file ``{name: WER}``,
as ``asrc-results --wer-json`` writes it), ``--cer`` CER in the same form (``asrc-results
--cer-json``); ``_`` and ``-`` in the names count as the same. The plot (``--plot``) shows size
against speed and, for the rows with a WER, WER against size and against speed; for the rows
with a CER, CER against parameters and against speed; each panel with its Pareto front.
``--agreement DATA_DIR`` adds, for every int8/ONNX row, how closely it follows its float model
on real audio (logit cosine, argmax agreement, greedy-output difference).
"""

import argparse
import dataclasses
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import torch

from asrc.core.constants import SAMPLE_RATE
from asrc.errors import AsrcError
from asrc.models.config import Wav2Vec2Config
from asrc.models.student_spec import CONV_CHANNELS, StudentSpec, read_student_spec


# Students built from the teacher when no --student DIR is given: student specs
# (asrc.models.student_spec; "c256" = 256-channel CNN, "d384" = transformer width 384 / FFN
# 1536 / 6 heads). Measured ratios: README, "The model and its compression knobs".
STUDENT_PRESETS = {
    # Teacher width, 4 layers, grouped CNN.
    "student-4L-g2": {"layers": {"num": 4}, "architecture": {"conv_groups": 2}},
    # Recommended: narrower transformer and CNN.
    "student-4L-g2-d384-c256": {"layers": {"num": 4}, "architecture": {
        "conv_groups": 2, "embed_dim": 384, "ffn_dim": 1536, "num_heads": 6, "conv_channels": 256}},
    # Keeps the teacher's 512 CNN channels, so build_student derives the grouped CNN from the teacher's.
    "student-4L-g2-d384": {"layers": {"num": 4}, "architecture": {
        "conv_groups": 2, "embed_dim": 384, "ffn_dim": 1536, "num_heads": 6}},
    "student-4L-g2-d512-c256": {"layers": {"num": 4}, "architecture": {
        "conv_groups": 2, "embed_dim": 512, "ffn_dim": 2048, "num_heads": 8, "conv_channels": 256}},
}
DEFAULT_PRESETS = ["student-4L-g2", "student-4L-g2-d384-c256", "student-4L-g2-d384"]

TINY_TEACHER = Wav2Vec2Config(conv_layers=[[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2, embed_dim=48,
                              ffn_dim=96, num_heads=4, num_layers=3, pos_conv_kernel=16, pos_conv_groups=4)


def student_spec(preset: Union[str, dict], teacher: Wav2Vec2Config, tiny: bool = False) -> StudentSpec:
    """The spec of a preset name, a spec mapping or a spec file; ``tiny`` keeps its shape at tiny
    scale (what it narrows is halved, at most 2 layers)."""
    spec = read_student_spec(STUDENT_PRESETS.get(preset, preset) if isinstance(preset, str) else preset,
                             source=f"student preset {preset}" if isinstance(preset, str) else None)
    if not tiny:
        return spec
    arch = dict(spec.architecture)
    for key in ("embed_dim", "ffn_dim", "num_heads"):
        if key in arch:
            arch[key] = getattr(teacher, key) // 2
    if CONV_CHANNELS in arch:
        arch[CONV_CHANNELS] = teacher.conv_dim // 2
    return spec.replace(architecture=arch, num_layers=min(spec.num_layers or teacher.num_layers, 2))


def student_config(teacher: Wav2Vec2Config, preset: Union[str, dict], tiny: bool = False) -> Wav2Vec2Config:
    """The architecture of :func:`student_spec` for ``teacher``."""
    return student_spec(preset, teacher, tiny).student_config(teacher)


def clip_macs(config: Wav2Vec2Config, samples: int) -> int:
    """Multiply-accumulates of one clip (convolutions and matrix products; :mod:`asrc.models.footprint`)."""
    from asrc.models.footprint import macs

    return sum(macs(config, samples).values())


@dataclass
class Row:
    name: str
    runtime: str  # asrc (torch) / transformers / onnxruntime
    precision: str
    params: int
    mb: float
    macs: int
    latency: float = float("nan")
    latency_min: float = float("nan")
    rtf: float = float("nan")
    speedup: float = float("nan")
    size_ratio: float = float("nan")
    wer: Optional[float] = None
    cer: Optional[float] = None
    # Agreement with the float model it was made from (asrc.quant.agreement), with --agreement.
    agreement: Optional[dict] = None
    note: str = ""


def _file_mb(*paths) -> float:
    return sum(Path(p).stat().st_size for p in paths) / 1e6


def _hf_config(config: Wav2Vec2Config):
    from transformers import Wav2Vec2Config as HFConfig

    return HFConfig(
        vocab_size=config.vocab_size, hidden_size=config.embed_dim, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, intermediate_size=config.ffn_dim,
        conv_dim=[c[0] for c in config.conv_layers], conv_kernel=[c[1] for c in config.conv_layers],
        conv_stride=[c[2] for c in config.conv_layers], conv_bias=config.conv_bias,
        feat_extract_norm="group" if config.extractor_mode == "group_norm" else "layer",
        do_stable_layer_norm=config.layer_norm_first, num_conv_pos_embeddings=config.pos_conv_kernel,
        num_conv_pos_embedding_groups=config.pos_conv_groups, layer_norm_eps=config.layer_norm_eps,
        hidden_act="gelu", feat_extract_activation="gelu", pad_token_id=0,
    )


def build_hf_peer(config: Wav2Vec2Config, advice: str = "give a teacher without them (or --no-peer)"):
    """transformers ``Wav2Vec2ForCTC`` with the architecture of ``config`` (random weights); an
    architecture transformers cannot build is an error ending in ``advice``."""
    if config.conv_groups != 1 or config.conv_share or config.layer_reuse != 1 or config.is_heterogeneous:
        raise AsrcError(f"the transformers peer has no grouped/shared convs, layer reuse or per-layer "
                        f"heads/FFN widths; {advice}")
    from transformers import Wav2Vec2ForCTC
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    return Wav2Vec2ForCTC(_hf_config(config)).eval()


def teacher_from_peer(peer):
    """An asrc teacher holding the peer's weights (through the HF importer)."""
    from asrc.models.import_hf import from_hf

    return from_hf(peer.config.to_dict(), peer.state_dict(), normalize=False,
                   source="transformers peer").build_model().eval()


def parse_wer(spec: Optional[str], metric: str = "WER") -> Dict[str, float]:
    """``name=WER,name=WER`` or a JSON file ``{name: WER}``; ``metric`` ("WER", "CER") names
    the value and the flag (``--wer``, ``--cer``) in the messages."""
    if not spec:
        return {}
    flag = f"--{metric.lower()}"
    if os.path.isfile(spec):
        try:
            with open(spec, encoding="utf-8") as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{flag} {spec}: not JSON ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(f"{flag} {spec}: expected a JSON object {{model name: {metric}}}")
        out = {}
        for k, v in data.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{flag} {spec}: {metric} of {k!r} is {v!r}, not a number")
            out[str(k)] = float(v)
        return out
    out = {}
    for item in spec.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{flag}: {item!r} is not name={metric} (nor an existing JSON file)")
        try:
            out[name.strip()] = float(value)
        except ValueError as e:
            raise ValueError(f"{flag}: {item!r}: {metric} {value!r} is not a number") from e
    return out


def student_name_and_dir(spec: str, what: str = "--student"):
    """``--student`` value (or another ``what``) -> (row name, model dir): ``NAME=DIR``, or ``DIR``
    named after itself (after its parent when it is called ``model``, as in ``exp/student/model``)."""
    name, sep, d = spec.partition("=")
    if not sep or os.path.isdir(spec):
        d = spec
        path = Path(spec).resolve()
        name = path.parent.name if path.name == "model" else path.name
    if not name or not d:
        raise AsrcError(f"{what} {spec!r}: expected DIR or NAME=DIR")
    return name, d


def wer_for(wer: Dict[str, float], name: str) -> Optional[float]:
    """The WER (or CER: any ``{name: value}``) of row ``name``; ``_`` and ``-`` count as the same
    (asrc-results writes ``student_int8``)."""
    if name in wer:
        return wer[name]
    canon = {k.replace("_", "-"): v for k, v in wer.items()}
    return canon.get(name.replace("_", "-"))


def load_input(args) -> torch.Tensor:
    samples = int(args.seconds * SAMPLE_RATE)
    if args.wav:
        from asrc.core.audio import read_audio

        wav = torch.from_numpy(read_audio(args.wav, resample=True, mix_channels=True))
        if wav.numel() < samples:  # repeat short recordings up to the requested duration
            wav = wav.repeat(samples // wav.numel() + 1)
        return wav[:samples].contiguous()[None]
    gen = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(1, samples, generator=gen)


def environment(args) -> dict:
    import onnxruntime
    import transformers

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, check=False).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": cpu, "cores": os.cpu_count(),
        "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "input_seconds": args.seconds,
        "python": platform.python_version(), "torch": str(torch.__version__),
        "onnxruntime": onnxruntime.__version__, "transformers": transformers.__version__,
        "quantized_engine": torch.backends.quantized.engine, "git_commit": commit,
        "load_average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "command": "asrc-bench footprint " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["footprint"] else []),
    }


def time_interleaved(runners: Dict[str, Callable], wav, lengths, runs: int, warmup: int, progress=None) -> Dict:
    times = {name: [] for name in runners}
    with torch.inference_mode():
        for name, fn in runners.items():
            for _ in range(warmup):
                fn(wav, lengths)
        for _ in range(runs):
            for name, fn in runners.items():
                start = time.perf_counter()
                fn(wav, lengths)
                times[name].append(time.perf_counter() - start)
            if progress is not None:
                progress.update(1)
    return times


def format_markdown(rows: List[Row], env: dict) -> str:
    has_wer = any(r.wer is not None for r in rows)
    has_cer = any(r.cer is not None for r in rows)
    has_agreement = any(r.agreement for r in rows)
    head = ["model", "runtime", "precision", "params (M)", "MB", "GMACs", "latency (s)", "best (s)", "RTF",
            "speed-up", "smaller"] + (["WER %"] if has_wer else []) + (["CER %"] if has_cer else []) + (
        ["logit cos", "argmax agree %", "greedy diff %"] if has_agreement else [])
    lines = [f"Footprint on {env['cpu']}, {env['threads']} threads, {env['input_seconds']:g} s input, "
             f"median of {env['runs']} interleaved runs after {env['warmup']} warm-up runs ({env['date']}, "
             f"torch {env['torch']}, onnxruntime {env['onnxruntime']}); load average (1/5/15 min) "
             f"{env['load_average_before']} before timing, {env['load_average']} after. latency = median, "
             "best = fastest run; RTF, speed-up and size ratio (\"smaller\") from the median and the saved files, "
             "against teacher.", "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r.name, r.runtime, r.precision, f"{r.params / 1e6:.2f}", f"{r.mb:.1f}", f"{r.macs / 1e9:.2f}",
                 f"{r.latency:.3f}", f"{r.latency_min:.3f}", f"{r.rtf:.4f}", f"{r.speedup:.2f}x", f"{r.size_ratio:.1f}x"]
        if has_wer:
            cells.append("" if r.wer is None else f"{r.wer:.2f}")
        if has_cer:
            cells.append("" if r.cer is None else f"{r.cer:.2f}")
        if has_agreement:
            a = r.agreement
            cells += ["", "", ""] if not a else [f"{a['logit_cosine']:.4f}", f"{100 * a['frame_agreement']:.2f}",
                                                 f"{100 * a['greedy_token_error']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if has_agreement:
        n = next(r.agreement["utterances"] for r in rows if r.agreement)
        lines += ["", f"Agreement columns: each compressed row against the float model it was made from, on {n} "
                      f"utterances of {env.get('agreement_data', '?')} (logit cosine, frames with the same argmax, "
                      "edit distance between the greedy CTC outputs / float output length)."]
    return "\n".join(lines) + "\n"


# Label offsets tried around a point, in points: nearest ring first, right of the point first.
_OFFSETS = [(dx * r, dy * r) for r in (5, 12, 22, 34, 48)
            for dx, dy in ((1, 0), (1, 1), (1, -1), (0, 1), (0, -1), (-1, 1), (-1, -1), (-1, 0))]


def _annotate(ax, label: str, xy, offset, fontsize: float):
    from matplotlib.patheffects import withStroke

    dx, dy = offset
    far = max(abs(dx), abs(dy)) > _OFFSETS[0][0]
    return ax.annotate(label, xy, xytext=offset, textcoords="offset points", fontsize=fontsize,
                       ha="left" if dx > 0 else "right" if dx < 0 else "center",
                       va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                       path_effects=[withStroke(linewidth=2, foreground="white")],  # legible over lines
                       arrowprops=dict(arrowstyle="-", lw=0.5, color="grey") if far else None)


def place_labels(ax, points, labels, fontsize: float = 7.0) -> list:
    """Annotate each point with its label, anchored at the point itself.

    The text goes to the first offset of ``_OFFSETS`` where it stays inside the axes and overlaps
    no label placed before, no marker and not the legend (a thin line joins it to its point
    beyond the first ring). Call once the axes' limits and layout are final. Returns the
    annotations in point order.
    """
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()

    def text_box(ann):  # the text alone, without its line to the point
        ann.update_positions(renderer)
        return Text.get_window_extent(ann, renderer)

    frame = ax.get_window_extent(renderer)
    half = 4 * ax.figure.dpi / 72.0  # half a marker's width (s=60: ~7.7 points)
    taken = [Bbox.from_bounds(x - half, y - half, 2 * half, 2 * half) for x, y in ax.transData.transform(points)]
    if ax.get_legend() is not None:
        taken.append(ax.get_legend().get_window_extent(renderer))
    annotations = []
    for xy, label in zip(points, labels):
        for offset in _OFFSETS:
            ann = _annotate(ax, label, xy, offset, fontsize)
            box = text_box(ann)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(b) for b in taken):
                break
            ann.remove()
        else:  # nowhere free: the first place, overlapping
            ann = _annotate(ax, label, xy, _OFFSETS[0], fontsize)
        taken.append(text_box(ann))
        annotations.append(ann)
    return annotations


def pareto_front(points) -> list:
    """The points no other point beats on both coordinates (lower is better), by the first."""
    front = []
    for x, y in sorted(set(points)):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def _log_tick_labels(axis, low: float, high: float):
    """Plain numbers on a log axis (0.003, 0.7, 10, not 3e-01): at 1, 2, 3 and 5 x 10^k, or at
    every tick where the axis spans less than a factor of 3 (else there may be none)."""
    from matplotlib.ticker import FuncFormatter

    shown = range(1, 10) if high < 3 * low else (1, 2, 3, 5)

    def label(x, _pos=None):
        mantissa = x / 10 ** math.floor(math.log10(x) + 1e-9)
        return f"{x:g}" if round(mantissa, 6) in shown else ""

    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(FuncFormatter(label))


# Panels side by side in one row of the figure; more go on further rows.
_PANELS_PER_ROW = 3


def figure(rows: List[Row], env: dict):
    """The footprint figure: size vs speed; WER vs size and vs speed for the rows with a WER;
    CER vs parameters and vs speed for the rows with a CER. Every panel: log x axis, the
    Pareto front (lower left is better); error rates on a linear y axis, sizes on a log one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"asrc": "tab:blue", "transformers": "tab:red", "onnxruntime": "tab:green"}
    speed = f"real-time factor ({env['threads']} threads, {env['input_seconds']:g} s input; lower is faster)"
    size, params = "size on disk (MB)", "parameters (M)"
    # (title, x label, y label, [(row, x, y)], y is an error rate)
    panels = [("size vs speed", speed, size, [(r, r.rtf, r.mb) for r in rows], False)]
    for metric, attr, (x_name, x_label, x_of) in (
            ("WER", "wer", ("size", size, lambda r: r.mb)),
            ("CER", "cer", ("parameters", params, lambda r: r.params / 1e6))):
        scored = [r for r in rows if getattr(r, attr) is not None]
        if scored:
            panels += [(f"{metric} vs {x_name}", x_label, f"{metric} (%)",
                        [(r, x_of(r), getattr(r, attr)) for r in scored], True),
                       (f"{metric} vs speed", speed, f"{metric} (%)", [(r, r.rtf, getattr(r, attr)) for r in scored],
                        True)]
    ncols = min(len(panels), _PANELS_PER_ROW)
    nrows = math.ceil(len(panels) / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 5 * nrows), dpi=120, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[len(panels):]:  # the unused places of the last row
        ax.remove()
    axes = axes[:len(panels)]
    for ax, (title, xlabel, ylabel, points, error_rate) in zip(axes, panels):
        for r, x, y in points:
            ax.scatter(x, y, c=colours.get(r.runtime, "k"), marker="o" if r.precision == "fp32" else "s",
                       s=60, zorder=3)
        front = pareto_front([(x, y) for _, x, y in points])
        ax.plot(*zip(*front), ls="--", lw=0.8, c="grey", drawstyle="steps-post", zorder=2, label="Pareto front")
        ax.set_xscale("log")
        ax.set_yscale("linear" if error_rate else "log")
        ax.margins(0.15)
        _log_tick_labels(ax.xaxis, *ax.get_xlim())
        if not error_rate:
            _log_tick_labels(ax.yaxis, *ax.get_ylim())
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(True, which="both", alpha=0.3)
    for runtime, colour in colours.items():
        axes[0].scatter([], [], c=colour, label=runtime)
    axes[0].scatter([], [], c="grey", marker="o", label="float32")
    axes[0].scatter([], [], c="grey", marker="s", label="int8")
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("asrc footprint (lower left is better; dashed: the Pareto front)")
    fig.tight_layout()
    for ax, (_title, _x, _y, points, _rate) in zip(axes, panels):
        place_labels(ax, [(x, y) for _, x, y in points], [r.name for r, _, _ in points])
    return fig


def plot(rows: List[Row], path, env: dict):
    """Write :func:`figure` as a PNG to ``path``."""
    import matplotlib.pyplot as plt

    from asrc.core.files import atomic_write

    fig = figure(rows, env)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def add_arguments(parser: argparse.ArgumentParser):
    from asrc.quant.calibrate import BIAS_CORRECTION, CALIBRATION_METHODS, ConvQuantOptions
    from asrc.quant.quantize import PTQ_MODES

    parser.add_argument("--teacher", metavar="DIR", help="teacher model dir (default: random wav2vec2-base)")
    parser.add_argument("--student", metavar="DIR", action="append", default=[],
                        help="student model dir, or NAME=DIR to name its rows (repeatable; default: students "
                             "built from --student-preset)")
    parser.add_argument("--student-preset", action="append", default=None, metavar="PRESET|[NAME=]SPEC",
                        help=f"students to build from the teacher: a preset ({', '.join(sorted(STUDENT_PRESETS))}) "
                             f"or a student spec YAML (repeatable; default: {' '.join(DEFAULT_PRESETS)})")
    parser.add_argument("--int8-mode", action="append", choices=list(PTQ_MODES), default=None,
                        help="asrc.quant mode of the int8 rows (repeatable; default: static-pos)")
    parser.add_argument("--conv-calibration", choices=CALIBRATION_METHODS, default=ConvQuantOptions.calibration,
                        help=f"activation ranges of the static int8 convs (default {ConvQuantOptions.calibration})")
    parser.add_argument("--percentile", type=float, default=99.99, help="for --conv-calibration percentile")
    parser.add_argument("--bias-correction", nargs="?", const="all", default="none", choices=BIAS_CORRECTION,
                        metavar="WHICH", help="bias correction of the static int8 convs: all (the flag alone), "
                                              "pos-conv, cnn or none (default; asrc.quant.calibrate)")
    parser.add_argument("--activation-bits", type=int, choices=(7, 8), default=8,
                        help="static int8 activations (default 8; 7: int8 speed on CPUs without VNNI, less accurate)")
    parser.add_argument("--int8-per-frame", action="store_true",
                        help="also time each static-conv int8 row with per-frame input ranges in the CNN "
                             "(<row>-frame: asrc-quantize --conv-activations per-frame)")
    parser.add_argument("--int8-bf16-attention", action="store_true",
                        help="also time each int8 row with its attention products in bfloat16 "
                             "(<row>-bf16att: asrc-quantize --attention-dtype bfloat16)")
    parser.add_argument("--int8-student", metavar="NAME=DIR", action="append", default=[],
                        help="an int8 model directory to time as it is (e.g. a QAT run's export; repeatable)")
    parser.add_argument("--calib", metavar="DATA_DIR", help="calibration data dir for the static modes "
                        "(default: the benchmark input itself)")
    parser.add_argument("--wav", help="audio file for the input (default: seeded noise; repeated to --seconds)")
    parser.add_argument("--seconds", type=float, default=10.0, help="input duration (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--runs", type=int, default=10, help="timed rounds; the median is reported (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per model first (default 2)")
    parser.add_argument("--no-peer", action="store_true", help="skip the transformers peer")
    parser.add_argument("--no-onnx", action="store_true", help="skip the onnxruntime rows")
    parser.add_argument("--no-int8", action="store_true",
                        help="skip the students' asrc int8 rows (and their QDQ exports): float models only")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (smoke test)")
    parser.add_argument("--agreement", metavar="DATA_DIR",
                        help="also measure each int8/ONNX row's agreement with its float model on this data dir")
    parser.add_argument("--agreement-utts", type=int, default=30, help="utterances for --agreement (default 30)")
    parser.add_argument("--wer", help="WER per row: name=WER,... or a JSON file {name: WER}")
    parser.add_argument("--cer", help="CER per row: name=CER,... or a JSON file {name: CER}")
    parser.add_argument("--workdir", help="where the saved models go (default: a temporary directory)")
    parser.add_argument("--json", help="write rows + environment as JSON")
    parser.add_argument("--markdown", help="write the markdown table")
    parser.add_argument("--plot", help="write a PNG: size vs RTF (+ WER vs size and vs RTF with --wer, "
                                       "CER vs parameters and vs RTF with --cer)")


def hf_onnx_int8(peer, out_path: Path, wav) -> Path:
    """The transformers model as ONNX (opset 17), then onnxruntime's ``quantize_dynamic`` with
    the ``optimum`` dynamic defaults: int8 weights per tensor, its default operator set."""
    import logging
    import warnings

    from onnxruntime.quantization import QuantType, quantize_dynamic

    float_path = out_path.with_name(f".{out_path.name}.fp32.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(peer.eval(), (wav,), str(float_path), input_names=["input_values"],
                          output_names=["logits"], dynamic_axes={"input_values": {0: "batch", 1: "samples"},
                                                                 "logits": {0: "batch", 1: "frames"}},
                          opset_version=17, dynamo=False)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(float_path), str(out_path), weight_type=QuantType.QInt8, per_channel=False)
    finally:
        root.setLevel(level)
        float_path.unlink(missing_ok=True)
    return out_path


def hf_onnx_runner(path: Path, threads: int) -> Callable:
    from asrc.quant.export import onnx_session

    session = onnx_session(path, threads)

    def run(w, _lengths):
        return torch.from_numpy(session.run(["logits"], {"input_values": w.numpy()})[0])

    return run


def run(args) -> int:
    try:
        return _run(args)
    except (AsrcError, FileNotFoundError, ValueError) as e:
        print(f"asrc-bench footprint: error: {e}", file=sys.stderr)
        return 1


@dataclass
class _Bench:
    """The models of one footprint run: rows in order, how to run each, and for a compressed row
    the float row it was made from."""

    work: Path
    samples: int
    rows: List[Row] = field(default_factory=list)
    runners: Dict[str, Callable] = field(default_factory=dict)
    sources: Dict[str, str] = field(default_factory=dict)

    def add(self, row: Row, runner: Callable, source: Optional[str] = None):
        self.rows.append(row)
        self.runners[row.name] = runner
        if source is not None:
            self.sources[row.name] = source
        print(f"  {row.name}: {row.params / 1e6:.2f}M params, {row.mb:.1f} MB", file=sys.stderr, flush=True)


def _add_teacher_and_peer(bench: _Bench, args, wav, lengths):
    """The teacher row (``--teacher`` or random) and, unless ``--no-peer``, the transformers peer."""
    from asrc.models import load, num_parameters, save_model_dir
    from asrc.models.io import WEIGHTS_NAME

    # The peer is built first so that a random teacher can take its weights.
    peer = None
    if args.teacher:
        teacher = load(args.teacher)
        if getattr(teacher, "quantization", None) is not None:
            raise AsrcError(f"{args.teacher}: the teacher must be a float model")
    else:
        config = TINY_TEACHER if args.tiny else Wav2Vec2Config()
        if args.no_peer:
            from asrc.models import build_model

            torch.manual_seed(0)
            teacher = build_model(config).eval()
        else:
            peer = build_hf_peer(config)
            teacher = teacher_from_peer(peer)
    tcfg = teacher.config
    save_model_dir(teacher, bench.work / "teacher")
    bench.add(Row("teacher", "asrc", "fp32", num_parameters(teacher), _file_mb(bench.work / "teacher" / WEIGHTS_NAME),
                  clip_macs(tcfg, bench.samples)), teacher)
    if args.no_peer:
        return teacher
    if peer is None:
        peer = build_hf_peer(tcfg)
    peer.save_pretrained(bench.work / "hf-peer")
    weights = sorted((bench.work / "hf-peer").glob("*.safetensors")) or sorted((bench.work / "hf-peer").glob("*.bin"))

    def run_peer(w, _lengths, peer=peer):
        return peer(w).logits

    row = Row("hf-peer", "transformers", "fp32", sum(p.numel() for p in peer.parameters()), _file_mb(*weights),
              clip_macs(tcfg, bench.samples))
    if not args.teacher:
        with torch.inference_mode():
            diff = (run_peer(wav, lengths) - teacher(wav, lengths)[0]).abs().max().item()
        row.note = f"same weights as teacher: max |logit diff| {diff:.2g}"
    bench.add(row, run_peer)
    if not args.no_onnx:
        path = hf_onnx_int8(peer, bench.work / "hf-peer-onnx-int8.onnx", wav)
        bench.add(Row("hf-peer-onnx-int8", "onnxruntime", "int8 (dynamic)", row.params, _file_mb(path), row.macs),
                  hf_onnx_runner(path, args.threads), source="hf-peer")
    return teacher


def _students(args, teacher) -> list:
    """``(name, float model)``: the ``--student`` directories, or students built from the teacher
    for each ``--student-preset``."""
    from asrc.models import load

    students = []
    for spec in args.student:
        name, d = student_name_and_dir(spec)
        model = load(d)
        if getattr(model, "quantization", None) is not None:
            raise AsrcError(f"{d}: give the float student; its int8 form is made here (--int8-mode)")
        students.append((name, model))
    names = [n for n, _ in students]
    if len(set(names)) != len(names):
        raise AsrcError(f"--student: two students named alike ({names}); name them: --student NAME=DIR")
    if not args.student:
        from asrc.models.student import build_from_spec

        for preset in args.student_preset or DEFAULT_PRESETS:
            name, spec = _preset(preset)
            try:
                spec = student_spec(spec, teacher.config, tiny=args.tiny)
                torch.manual_seed(0)
                # "energy" init: derived from the teacher without the least-squares fit (speed and
                # size do not depend on the weights; trained students come through --student).
                student, _report = build_from_spec(teacher, spec.replace(conv_init="energy"))
            except (AsrcError, ValueError) as e:
                chosen = "" if args.student_preset else " (a default preset; choose with --student-preset or --student)"
                raise AsrcError(f"student preset {preset!r}{chosen}: {e}") from e
            students.append((name, student.eval()))
    return students


def _preset(value: str):
    """``--student-preset`` value -> (row name, preset name or spec file)."""
    if value in STUDENT_PRESETS:
        return value, value
    name, sep, path = value.partition("=")
    if not sep:
        name, path = Path(value).stem, value
    if not Path(path).is_file():
        raise AsrcError(f"--student-preset {value!r}: neither a preset ({', '.join(sorted(STUDENT_PRESETS))}) "
                        f"nor a student spec file")
    return name, path


def _ptq_options(args):
    """``(ConvQuantOptions, row-label suffix)`` of the post-training int8 flags."""
    from asrc.quant.calibrate import ConvQuantOptions

    options = ConvQuantOptions(calibration=args.conv_calibration, percentile=args.percentile,
                               bias_correction=args.bias_correction)
    corrected = {"none": "", "all": " + bias corr."}.get(options.bias_correction,
                                                         f" + bias corr. ({options.bias_correction})")
    label = ("" if (options.calibration, corrected) == (ConvQuantOptions.calibration, "") else
             f", {options.calibration}{corrected}")
    if args.activation_bits == 7:
        label += ", 7-bit"
    return options, label


def _add_qdq(bench: _Bench, args, qname: str, qmodel, macs, source: Optional[str]):
    """The ONNX QDQ export of an asrc int8 model, run by onnxruntime."""
    from asrc.models import num_parameters
    from asrc.quant.export import export_onnx, run_export

    path = export_onnx(qmodel, bench.work / f"{qname}-qdq.onnx")
    bench.add(Row(f"{qname}-qdq", "onnxruntime", f"int8 (QDQ of {qmodel.quantization.mode})", num_parameters(qmodel),
                  _file_mb(path), macs), run_export(path, "onnx", threads=args.threads), source=source)


def _add_int8_students(bench: _Bench, args):
    """``--int8-student`` directories (e.g. a QAT run's export), timed as they are, and their QDQ export."""
    from asrc.models import load, num_parameters
    from asrc.models.io import WEIGHTS_NAME

    for spec_arg in args.int8_student:
        name, d = student_name_and_dir(spec_arg)
        qmodel = load(d)
        if getattr(qmodel, "quantization", None) is None:
            raise AsrcError(f"--int8-student {d}: not an int8 model directory (no quantization.yaml)")
        macs = clip_macs(qmodel.config, bench.samples)
        bench.add(Row(name, "asrc", f"int8 ({qmodel.quantization.mode})", num_parameters(qmodel),
                      _file_mb(Path(d) / WEIGHTS_NAME), macs), qmodel)
        if not args.no_onnx:
            _add_qdq(bench, args, name, qmodel, macs, None)


def _add_student_rows(bench: _Bench, args, name: str, student, calib, calib_info):
    """The float student, its int8 form(s) through asrc.quant (and their QDQ export) and, unless
    ``--no-onnx``, its ONNX exports."""
    from asrc.models import load, num_parameters, save_model_dir
    from asrc.models.io import WEIGHTS_NAME
    from asrc.models.quantized import save_quantized, set_attention_dtype
    from asrc.quant import quantize_model
    from asrc.quant.export import export_onnx, run_export

    options, ptq_label = _ptq_options(args)
    work = bench.work
    save_model_dir(student, work / name)
    params = num_parameters(student)
    macs = clip_macs(student.config, bench.samples)
    bench.add(Row(name, "asrc", "fp32", params, _file_mb(work / name / WEIGHTS_NAME), macs), student)
    def add_int8(qname: str, mode: str, mode_options, precision: str):
        """Quantize the student, save it, time it as loaded back; returns the loaded model."""
        qmodel, spec = quantize_model(student, mode, calib, calibration_info=calib_info, options=mode_options,
                                      reduce_range=args.activation_bits == 7)
        save_quantized(qmodel, spec, work / qname)
        reloaded = load(work / qname)
        bench.add(Row(qname, "asrc", precision, num_parameters(reloaded), _file_mb(work / qname / WEIGHTS_NAME),
                      macs), reloaded, source=name)
        return reloaded

    for i, mode in enumerate([] if args.no_int8 else args.int8_mode or ["static-pos"]):
        qname = f"{name}-int8" if i == 0 else f"{name}-int8-{mode}"
        precision = f"int8 ({mode}{ptq_label if mode != 'dynamic' else ''})"
        reloaded = add_int8(qname, mode, options, precision)
        if args.int8_per_frame and mode == "static-conv":
            add_int8(f"{qname}-frame", mode, dataclasses.replace(options, activations="per-frame"),
                     f"int8 ({mode}{ptq_label}, per-frame CNN)")
        if args.int8_bf16_attention:
            bf16 = load(work / qname)
            set_attention_dtype(bf16, "bfloat16")
            bench.add(Row(f"{qname}-bf16att", "asrc", f"{precision} + bf16 attention", num_parameters(bf16),
                          _file_mb(work / qname / WEIGHTS_NAME), macs), bf16, source=name)
        if not args.no_onnx:
            _add_qdq(bench, args, qname, reloaded, macs, name)
    if not args.no_onnx:
        for int8 in (False, True):
            suffix = "-onnx-int8" if int8 else "-onnx"
            path = export_onnx(student, work / f"{name}{suffix}.onnx", int8=int8)
            bench.add(Row(name + suffix, "onnxruntime", "int8 (MatMul)" if int8 else "fp32", params, _file_mb(path),
                          macs), run_export(path, "onnx", threads=args.threads), source=name)


def _time_rows(bench: _Bench, args, wav, lengths, wer: Dict[str, float], cer: Dict[str, float]):
    """Time every row (interleaved runs) and fill in latency, RTF and the ratios against the teacher."""
    from tqdm import tqdm

    print(f"timing {len(bench.runners)} models: {args.warmup} warm-up + {args.runs} interleaved runs on "
          f"{bench.samples / SAMPLE_RATE:g} s, {args.threads} threads ...", file=sys.stderr, flush=True)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with tqdm(total=args.runs, desc="rounds", file=sys.stderr, disable=None) as progress:
        times = time_interleaved(bench.runners, wav, lengths, args.runs, args.warmup, progress)
    base = bench.rows[0]
    base_latency = statistics.median(times[base.name])
    for r in bench.rows:
        r.latency = statistics.median(times[r.name])
        r.latency_min = min(times[r.name])
        r.rtf = r.latency / (bench.samples / SAMPLE_RATE)
        r.speedup = base_latency / r.latency
        r.size_ratio = base.mb / r.mb
        r.wer = wer_for(wer, r.name)
        r.cer = wer_for(cer, r.name)
    for flag, given in (("--wer", wer), ("--cer", cer)):
        matched = {k for k in given if any(wer_for({k: 0.0}, r.name) is not None for r in bench.rows)}
        unknown = sorted(set(given) - matched)
        if unknown:
            print(f"warning: {flag} names no row: {unknown} (rows: {[r.name for r in bench.rows]})", file=sys.stderr)
    return times, load_before


def _add_agreement(bench: _Bench, args, env: dict):
    """``--agreement``: each compressed row against its float row on real audio."""
    from tqdm import tqdm

    from asrc.core.audio import read_waveforms
    from asrc.quant.agreement import agreement

    waves, info = read_waveforms(args.agreement, max_utterances=args.agreement_utts, max_seconds=3600)
    env["agreement_data"] = f"{args.agreement} ({info['seconds']:g} s)"
    for r in tqdm(bench.rows, desc="agreement", file=sys.stderr, disable=None):
        if r.name in bench.sources:
            r.agreement = agreement(bench.runners[bench.sources[r.name]], bench.runners[r.name], waves)


def _write_reports(rows: List[Row], args, env: dict, calib_info: dict, times: dict):
    from asrc.core.files import atomic_write

    table = format_markdown(rows, env)
    print(table)
    for r in rows:
        if r.note:
            print(f"{r.name}: {r.note}")
    if args.markdown:
        with atomic_write(args.markdown) as f:
            f.write(table)
    if args.json:
        with atomic_write(args.json) as f:
            json.dump({"environment": env, "calibration": calib_info, "rows": [asdict(r) for r in rows],
                       "times": times}, f, indent=1)
    if args.plot:
        plot(rows, args.plot, env)


def _run(args) -> int:
    if args.runs < 1 or args.warmup < 0 or args.threads < 1 or args.seconds <= 0:
        raise ValueError("--runs >= 1, --warmup >= 0, --threads >= 1 and --seconds > 0 are required")
    if args.no_int8 and args.int8_mode:
        raise ValueError("--no-int8 and --int8-mode: give one of them")
    wer = parse_wer(args.wer)
    cer = parse_wer(args.cer, "CER")
    torch.set_num_threads(args.threads)
    if args.tiny and args.seconds == 10.0:
        args.seconds = 1.0
    wav = load_input(args)
    lengths = torch.tensor([wav.shape[1]])
    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="asrc_footprint_")
        work = Path(tmp.name)
    bench = _Bench(work, wav.shape[1])

    print(f"building models in {work} ...", file=sys.stderr, flush=True)
    teacher = _add_teacher_and_peer(bench, args, wav, lengths)
    students = _students(args, teacher)
    _add_int8_students(bench, args)
    calib = [wav[0]]
    calib_info = {"source": "benchmark input"}
    if args.calib:
        from asrc.core.audio import read_waveforms

        calib, calib_info = read_waveforms(args.calib)
    for name, student in students:
        _add_student_rows(bench, args, name, student, calib, calib_info)

    times, load_before = _time_rows(bench, args, wav, lengths, wer, cer)
    env = environment(args)
    env["load_average_before"] = load_before
    if args.agreement:
        _add_agreement(bench, args, env)
    _write_reports(bench.rows, args, env, calib_info, times)
    if tmp is not None:
        tmp.cleanup()
    return 0
