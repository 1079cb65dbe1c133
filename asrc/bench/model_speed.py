"""CPU forward speed of asrc's wav2vec 2.0 vs transformers' Wav2Vec2ForCTC on the same weights.

Builds the wav2vec2-base architecture (12 post-LN layers, width 768, 32 outputs), or that of
an asrc model directory (``--config-of DIR``), with random weights in transformers, imports
them with :mod:`asrc.models.import_hf`, and times one
utterance through each model (``torch.inference_mode``, fp32) after a warm-up. The two models
take turns run by run (ABBA order) so that load from other processes on a shared CPU hits
both alike. Prints both medians (with the fastest run and the CPU time), the ratio of the
median wall times and the largest logit difference.

Usage:
    asrc-bench model-speed                       # 10 s clip, 2 threads, median of 10 runs
    asrc-bench model-speed --runs 20 --json
    asrc-bench model-speed --config-of egs/an4/teacher --runs 25   # the AN4 teacher's architecture
"""

import json
import math
import statistics
import sys
import time

import torch

from asrc.core.constants import SAMPLE_RATE
from asrc.errors import AsrcError
from asrc.models.import_hf import from_hf


def add_arguments(parser):
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length at 16 kHz (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads, at least 1 (default 2)")
    parser.add_argument("--runs", type=int, default=10,
                        help="timed runs per model, at least 1; the median is reported (default 10)")
    parser.add_argument("--warmup", type=int, default=1,
                        help="untimed runs per model first, at least 1; the first one's logits are compared "
                             "(default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--config-of", metavar="MODEL_DIR",
                        help="time the architecture of this asrc model directory (its config.yaml; random "
                             "weights, the same in both) instead of wav2vec2-base")


def _time(fn):
    """(wall, CPU) seconds of one call; CPU time (all threads) is less sensitive to a busy machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def check_option_ranges(args) -> None:
    """One-line :class:`AsrcError` naming the first option out of its range."""
    for flag, value in (("--threads", args.threads), ("--runs", args.runs), ("--warmup", args.warmup)):
        if value < 1:
            raise AsrcError(f"{flag} must be >= 1, got {value}")
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        raise AsrcError(f"--seconds must be a finite number > 0, got {args.seconds}")


def run(args) -> int:
    check_option_ranges(args)
    try:
        import transformers
    except ImportError:
        print("model-speed: transformers is needed for the reference model (pip install transformers)", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.config_of:
        from asrc.bench.footprint import build_hf_peer
        from asrc.models.io import load_config

        hf = build_hf_peer(load_config(args.config_of), advice=f"give --config-of a model without them "
                                                                f"({args.config_of} has some)")
        architecture = str(args.config_of)
    else:
        hf = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config()).eval()  # wav2vec2-base, 32 letters
        architecture = "wav2vec2-base"
    ours = from_hf(hf.config.to_dict(), hf.state_dict(), normalize=False, source="Wav2Vec2ForCTC").build_model()
    ours.eval()
    config = ours.config

    samples = int(args.seconds * SAMPLE_RATE)
    if samples < config.receptive_field:
        raise AsrcError(f"--seconds {args.seconds:g} is {samples} samples, fewer than the model's receptive field "
                        f"({config.receptive_field} samples)")
    wav = torch.randn(1, samples)
    lengths = torch.tensor([wav.shape[1]])
    models = {
        "asrc": lambda: ours(wav, lengths)[0],
        "transformers": lambda: hf(wav).logits,
    }
    times = {name: [] for name in models}
    cpu_times = {name: [] for name in models}
    with torch.inference_mode():
        logits = {name: fn() for name, fn in models.items()}
        for _ in range(args.warmup - 1):
            for fn in models.values():
                fn()
        for i in range(args.runs):
            # Alternate which model goes first so neither always follows the other.
            for name in (list(models) if i % 2 == 0 else list(models)[::-1]):
                wall, cpu = _time(models[name])
                times[name].append(wall)
                cpu_times[name].append(cpu)

    medians = {name: statistics.median(t) for name, t in times.items()}
    cpu_medians = {name: statistics.median(t) for name, t in cpu_times.items()}
    result = {
        "architecture": f"{architecture}: {config.num_layers} layers, width {config.embed_dim}, "
                        f"vocab {config.vocab_size}",
        "seconds": args.seconds,
        "threads": args.threads,
        "runs": args.runs,
        "asrc_median_s": round(medians["asrc"], 6),
        "transformers_median_s": round(medians["transformers"], 6),
        "asrc_min_s": round(min(times["asrc"]), 6),
        "transformers_min_s": round(min(times["transformers"]), 6),
        "asrc_cpu_median_s": round(cpu_medians["asrc"], 6),
        "transformers_cpu_median_s": round(cpu_medians["transformers"], 6),
        "asrc_over_transformers": round(medians["asrc"] / medians["transformers"], 3),
        "max_abs_logit_diff": float((logits["asrc"] - logits["transformers"]).abs().max()),
        "transformers_version": transformers.__version__,
        "transformers_attention": getattr(hf.config, "_attn_implementation", None),
        "torch_version": torch.__version__,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['architecture']}; {args.seconds:g} s clip, {args.threads} threads, median of {args.runs} runs")
    for name in models:
        print(f"{name + ':':14s}median {medians[name]:.3f} s  (fastest {min(times[name]):.3f} s, "
              f"CPU time median {cpu_medians[name]:.3f} s)")
    print(f"reference: transformers {transformers.__version__}, attention {result['transformers_attention']}")
    print(f"ratio asrc/transformers: {result['asrc_over_transformers']:.3f}  "
          f"({'asrc faster' if medians['asrc'] < medians['transformers'] else 'asrc slower'})")
    print(f"max |logit difference|: {result['max_abs_logit_diff']:.2e}")
    return 0
