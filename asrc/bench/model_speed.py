"""CPU forward speed of asrc's wav2vec 2.0 vs transformers' Wav2Vec2ForCTC on the same weights.

Builds the wav2vec2-base architecture (12 post-LN layers, width 768, 32 outputs) with random
weights in transformers, imports them with :mod:`asrc.models.import_hf`, and times one
utterance through each model (``torch.inference_mode``, fp32) after a warm-up. The two models
alternate run by run so that load from other processes on a shared CPU hits both alike.
Prints both medians, the ratio and the largest logit difference.

Usage:
    asrc-bench model-speed                       # 10 s clip, 2 threads, median of 10 runs
    asrc-bench model-speed --runs 20 --json
"""

import json
import statistics
import sys
import time

import torch

from asrc.models.import_common import ImportedCheckpoint
from asrc.models.import_hf import hf_config_to_asrc, hf_state_dict_to_asrc


def add_arguments(parser):
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length at 16 kHz (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model; the median is reported (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per model first, at least 1 (its logits are compared; default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(args) -> int:
    try:
        import transformers
    except ImportError:
        print("model-speed: transformers is needed for the reference model (pip install transformers)", file=sys.stderr)
        return 1
    if args.runs < 1 or args.seconds <= 0:
        print("model-speed: --runs must be >= 1 and --seconds > 0", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    hf_config = transformers.Wav2Vec2Config()  # the defaults are wav2vec2-base with 32 letters
    hf = transformers.Wav2Vec2ForCTC(hf_config).eval()
    state, dropped = hf_state_dict_to_asrc(hf.state_dict(), "transformers Wav2Vec2ForCTC")
    config = hf_config_to_asrc(hf_config.to_dict(), normalize=False)
    fresh = [] if "mask_emb" in state else ["mask_emb"]
    ours = ImportedCheckpoint("transformers Wav2Vec2ForCTC", config, state, None, fresh, dropped).build_model()

    wav = torch.randn(1, int(args.seconds * 16000))
    lengths = torch.tensor([wav.shape[1]])
    models = {
        "asrc": lambda: ours(wav, lengths)[0],
        "transformers": lambda: hf(wav).logits,
    }
    times = {name: [] for name in models}
    with torch.inference_mode():
        logits = {name: fn() for name, fn in models.items()}
        for _ in range(args.warmup - 1):
            for fn in models.values():
                fn()
        for _ in range(args.runs):
            for name, fn in models.items():
                times[name].append(_time(fn))

    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "architecture": f"wav2vec2-base: {config.num_layers} layers, width {config.embed_dim}, vocab {config.vocab_size}",
        "seconds": args.seconds,
        "threads": args.threads,
        "runs": args.runs,
        "asrc_median_s": round(medians["asrc"], 4),
        "transformers_median_s": round(medians["transformers"], 4),
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
    print(f"asrc:         {medians['asrc']:.3f} s")
    print(f"transformers: {medians['transformers']:.3f} s  ({transformers.__version__}, "
          f"attention {result['transformers_attention']})")
    print(f"ratio asrc/transformers: {result['asrc_over_transformers']:.3f}  "
          f"({'asrc faster' if medians['asrc'] < medians['transformers'] else 'asrc slower'})")
    print(f"max |logit difference|: {result['max_abs_logit_diff']:.2e}")
    return 0
