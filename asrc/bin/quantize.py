"""asrc-quantize: int8 post-training quantization of an asrc model directory.

Usage:
    asrc-quantize exp/student exp/student_int8                                   # --mode dynamic
    asrc-quantize exp/student exp/student_int8 --mode static-pos --calib data/dev_clean
    asrc-quantize exp/student exp/student_int8 --mode static-pos --calib data/dev_clean --check data/test

Modes:
    dynamic      int8 Linear layers (weights per output row, activations per call); the
                 positional conv's weight norm folded into one kernel; convs stay float.
    static-pos   dynamic + static int8 positional conv, activation ranges from --calib audio
                 (a Kaldi-style data dir with wav.scp). As accurate as dynamic, smaller, faster.
    static-conv  static-pos + static int8 CNN layers 2..N: fastest and smallest, at a cost in
                 accuracy (AN4 teacher, test CER 14.5 float: 16.6 with the default percentile
                 ranges); check before use, or train with qat. --conv-weights,
                 --conv-calibration and --bias-correction choose how the static convs are
                 quantized (asrc.quant.calibrate), each alone or together.
                 --bias-correction WHICH: all (the flag alone), pos-conv or cnn. On the AN4
                 teacher (egs/an4/RESULTS.md) the positional conv's correction helped (CER
                 16.61 -> 15.98 on asrc's CPU path), the CNN's hurt there (-> 26.12): it moves
                 quiet frames by the mean shift of loud ones.
                 --conv-activations per-frame: the CNN layers quantize their input per frame
                 (and conv group), over the frame's own range on every call, instead of one calibrated
                 range per layer: quiet frames keep their precision (AN4 teacher: see
                 egs/an4/RESULTS.md, "Per-frame activations of the int8 CNN").
    --attention-dtype bfloat16: the attention products (activations times activations, float
                 in every mode) in bfloat16, for CPUs with bf16 units (AMX, AVX512-BF16): the
                 narrow student of asrc-bench footprint 14.1x -> 16.3x faster than the fp32
                 teacher on an AMX Xeon; AN4 teacher static-conv CER 16.61 -> 16.53
                 (docs/FOOTPRINT.md). Recorded in quantization.yaml.
    qat          SRC is an asrc-train experiment trained with a `qat:` section
                 (asrc.quant.qat): its fake-quantized model becomes the static-conv structure
                 with the learned scales; --checkpoint picks the checkpoint.

    asrc-quantize exp/student exp/student_int8 --mode static-conv --calib data/dev \
        --conv-calibration mse --bias-correction pos-conv
    asrc-quantize exp/student_qat exp/student_qat_int8 --mode qat

OUT holds config.yaml, quantization.yaml (what was quantized, engine, calibration),
model.pth (the int8 state dict) and tokens.txt; asrc.models.load(OUT) and every asrc command
that takes a model directory read it. int8 kernels run on the CPU. --check prints how closely
the int8 model follows the float one (logit cosine, posterior KL, argmax and greedy-output
agreement) on up to 50 utterances of a data dir.
"""

import argparse
import sys
from pathlib import Path

from asrc.bin._cli import ArgumentParser, command


def get_parser() -> argparse.ArgumentParser:
    from asrc.models.quantized import ATTENTION_DTYPES
    from asrc.quant import MODES
    from asrc.quant.calibrate import ACTIVATION_GRANULARITY, BIAS_CORRECTION, CALIBRATION_METHODS, ConvQuantOptions

    parser = ArgumentParser(prog="asrc-quantize", description=__doc__.split("\n")[0],
                            epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="float model directory (config.yaml + model.pth)")
    parser.add_argument("out", help="quantized model directory to write")
    parser.add_argument("--mode", default="dynamic", choices=sorted(MODES), help="what to quantize (default: dynamic)")
    parser.add_argument("--calib", metavar="DATA_DIR", help="calibration audio (wav.scp) for the static modes")
    parser.add_argument("--calib-utts", type=int, default=16, help="calibration utterances, spread over wav.scp")
    parser.add_argument("--engine", default=None, help="torch quantized engine (default: x86)")
    parser.add_argument("--activation-bits", type=int, choices=(7, 8), default=8,
                        help="static-mode activations (default 8): 8 runs at int8 speed on a CPU with "
                             "VNNI (AVX512-VNNI/AVX-VNNI) and exactly but at float speed elsewhere; 7 runs "
                             "at int8 speed on any CPU but costs accuracy")
    parser.add_argument("--conv-weights", choices=("per-channel", "per-tensor"), default="per-channel",
                        help="static int8 conv weight scales (default per-channel)")
    parser.add_argument("--conv-calibration", choices=CALIBRATION_METHODS, default=ConvQuantOptions.calibration,
                        help=f"static int8 conv activation ranges (default {ConvQuantOptions.calibration})")
    parser.add_argument("--percentile", type=float, default=99.99,
                        help="with --conv-calibration percentile: the upper quantile in percent (default 99.99)")
    parser.add_argument("--bias-correction", nargs="?", const="all", default="none", choices=BIAS_CORRECTION,
                        metavar="WHICH",
                        help="move int8 conv biases by their mean output shift on the --calib audio: all the static "
                             "convs (the flag alone), pos-conv (the positional conv alone: the one that helped on "
                             "AN4), cnn (the CNN layers alone) or none (default)")
    parser.add_argument("--conv-activations", choices=ACTIVATION_GRANULARITY, default=ConvQuantOptions.activations,
                        help="input ranges of the int8 CNN layers (static-conv): per-tensor (calibrated, the "
                             "default) or per-frame (each frame's channels of each conv group over their own range, "
                             "computed on every call)")
    parser.add_argument("--attention-dtype", choices=ATTENTION_DTYPES, default="float32",
                        help="dtype of the attention products (default float32; bfloat16 runs them on the bf16 "
                             "units of CPUs that have them: AMX, AVX512-BF16)")
    parser.add_argument("--checkpoint", help="--mode qat: checkpoint of the experiment (default: as asrc-decode)")
    parser.add_argument("--check", metavar="DATA_DIR", help="report agreement with the float model on this data dir")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    return parser


# Flags that only a post-training static mode reads (dynamic quantizes activations per call,
# qat takes its ranges and bits from training): given to another mode they would be ignored.
_STATIC_FLAGS = ("calib", "calib_utts", "activation_bits", "conv_weights", "conv_calibration", "percentile",
                 "bias_correction", "conv_activations")


def _check_flags(parser: argparse.ArgumentParser, args) -> None:
    """A flag the chosen mode would ignore is an error naming it (it was silently ignored)."""
    from asrc.errors import AsrcError

    given = [f"--{name.replace('_', '-')}" for name in _STATIC_FLAGS
             if getattr(args, name) != parser.get_default(name)]
    if args.mode == "qat" and given:
        raise AsrcError(f"--mode qat converts a QAT experiment: its activation ranges and bits come from training "
                        f"(the qat: section, e.g. activation_bits); {' '.join(given)} would be ignored: remove it")
    if args.mode == "dynamic" and given:
        raise AsrcError(f"--mode dynamic quantizes the Linear layers' inputs per call, without calibration (8-bit "
                        f"codes on a CPU with VNNI, 7-bit without); {' '.join(given)} applies to the static modes "
                        f"(static-pos, static-conv): remove it or choose one")
    if args.percentile != parser.get_default("percentile") and args.conv_calibration != "percentile":
        raise AsrcError(f"--percentile applies to --conv-calibration percentile, not {args.conv_calibration}")
    if Path(args.src).resolve() == Path(args.out).resolve():
        raise AsrcError(f"OUT {args.out} is SRC: the float model would be overwritten; give another folder")


@command("asrc-quantize")
def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    _check_flags(parser, args)
    from asrc.quant.agreement import format_agreement
    from asrc.quant.calibrate import ConvQuantOptions
    from asrc.quant.quantize_dir import quantize_dir

    options = ConvQuantOptions(weights=args.conv_weights, calibration=args.conv_calibration,
                               percentile=args.percentile, bias_correction=args.bias_correction,
                               activations=args.conv_activations)
    summary = quantize_dir(args.src, args.out, args.mode, calib=args.calib, calib_utts=args.calib_utts,
                           engine=args.engine, activation_bits=args.activation_bits, check=args.check,
                           overwrite=args.overwrite, options=options, checkpoint=args.checkpoint,
                           attention_dtype=args.attention_dtype)
    spec, mb_in, mb_out = summary["spec"], summary["mb_in"], summary["mb_out"]
    print(f"{Path(args.out)}: mode {args.mode}, {len(spec.dynamic_int8_linear)} int8 Linear, "
          f"{len(spec.static_int8_conv)} int8 Conv; model.pth {mb_in:.1f} MB -> {mb_out:.1f} MB "
          f"({mb_in / mb_out:.2f}x smaller)")
    if args.check:
        print(f"agreement with the float model on {args.check}:")
        print("\n".join("  " + line for line in format_agreement(summary["agreement"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
