"""asrc-export: an asrc model directory -> TorchScript or ONNX.

Usage:
    asrc-export exp/student exp/student.onnx --format onnx
    asrc-export exp/student exp/student_int8.onnx --format onnx --int8      # onnxruntime int8
    asrc-export exp/student exp/student.pt --format torchscript
    asrc-export exp/student_int8 exp/student_int8.pt --format torchscript   # asrc-quantize output
    asrc-export exp/student_int8 exp/student_int8.onnx --format onnx        # QDQ of asrc's int8

Inputs ``wav [batch, samples]`` float32 16 kHz and ``lengths [batch]`` int64; outputs ``logits
[batch, frames, vocab]`` and ``out_lengths [batch]``; batch and length are dynamic. Both formats
take float and asrc-quantize'd directories: TorchScript runs torch's int8 kernels, ONNX writes
asrc's int8 model as QDQ (int8 convs with asrc's scales, MatMuls quantized by onnxruntime);
--int8 quantizes a float model's exported MatMul weights with onnxruntime. Int8 layers that
quantize their input per call see the whole batch in ONNX: feed one utterance at a time for
logits that do not depend on the batch (TorchScript, like asrc, loops over the batch itself).
--check compares the export with the PyTorch model on random audio and fails beyond the
tolerance (max |logit difference| 1e-3 for float exports, cosine for int8); an export that
fails it is deleted, not written as OUT.
"""

import argparse
import os
import sys

from asrc.bin._cli import ArgumentParser, command


def get_parser() -> argparse.ArgumentParser:
    from asrc.quant.export import FORMATS

    parser = ArgumentParser(prog="asrc-export", description=__doc__.split("\n")[0],
                            epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model directory (float, or asrc-quantize output)")
    parser.add_argument("out", help="file to write (.onnx / .pt)")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--int8", action="store_true", help="onnx: quantize the exported graph with onnxruntime")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="compare the export with the PyTorch model (default: on)")
    return parser


@command("asrc-export")
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    from asrc.errors import AsrcError
    from asrc.models import load
    from asrc.quant.export import check_export, check_out_path, export_model

    out = check_out_path(args.out)
    model = load(args.model)
    if not args.check:
        path = export_model(model, out, args.format, int8=args.int8)
        print(f"{path}: {args.format}{' int8' if args.int8 else ''}, {path.stat().st_size / 1e6:.1f} MB")
        return 0
    # Checked under another name and moved into place only once it passes: an export that fails
    # its check is not left as OUT (and an OUT already there stays as it was).
    staged = out.with_name(f".{out.name}.unchecked")
    try:
        export_model(model, staged, args.format, int8=args.int8)
        report = check_export(model, staged, args.format, int8=args.int8)
        if not report["ok"]:
            raise AsrcError(f"{out}: not written, the export failed its check: {report['message']}")
        os.replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)
    print(f"{out}: {args.format}{' int8' if args.int8 else ''}, {out.stat().st_size / 1e6:.1f} MB")
    print(report["message"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
