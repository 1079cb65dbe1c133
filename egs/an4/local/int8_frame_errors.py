#!/usr/bin/env python3
"""Where an int8 CNN loses the float model: error of the CNN features, quiet frames against the rest.

For each int8 model directory, over the utterances of a data dir, the features that enter the
transformer (the CNN output after the feature projection's layer norm) are compared with the
float model's, frame by frame: ``|int8 - float| / |float|`` per frame, averaged over the
quietest quarter of the frames (by the spread of the float CNN output across channels, which
the layer norm divides by) and over the other three quarters, on asrc's CPU path and on
torch's int8 modules (``ASRC_FAST_PATH=0``). A relative error near 1 means the frame's features
carry no more of the float model's than zeros would.

    local/int8_frame_errors.py teacher data/test exp/int8/none/model exp/int8/all/model ...

Prints one Markdown table.
"""

import argparse
import sys

import torch

from asrc.bin._cli import ArgumentParser, command


def _features(model, wav: torch.Tensor, fast: bool) -> torch.Tensor:
    """``(CNN output [frames, channels], its layer-normed form)`` of one utterance."""
    from asrc.models.wav2vec2 import plain_ops

    lengths = torch.tensor([wav.numel()])
    if fast:
        feats = model.encode(wav[None], lengths, return_features=True).features[0]
    else:
        with plain_ops():
            feats = model.encode(wav[None], lengths, return_features=True).features[0]
    return feats, model.feature_projection.layer_norm(feats)


@command("int8_frame_errors.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("float_model", help="the float model directory")
    parser.add_argument("data_dir", help="Kaldi-style data dir (wav.scp)")
    parser.add_argument("int8_models", nargs="+", metavar="INT8_MODEL", help="int8 model directories (LABEL=DIR or DIR)")
    parser.add_argument("--max-utts", type=int, default=40, help="utterances, spread over wav.scp (default 40)")
    args = parser.parse_args(argv)
    from asrc.bench.footprint import student_name_and_dir
    from asrc.core.audio import read_waveforms
    from asrc.models import load

    reference = load(args.float_model).eval()
    waveforms, _info = read_waveforms(args.data_dir, max_utterances=args.max_utts, max_seconds=1e9)
    with torch.inference_mode():
        ref = [_features(reference, w, False) for w in waveforms]
        spread = torch.cat([f.std(dim=1) for f, _ in ref])
        quiet = spread <= torch.quantile(spread, 0.25)
        print(f"{len(waveforms)} utterances of {args.data_dir}, {spread.numel()} frames; quiet: the "
              f"{int(quiet.sum())} with the smallest spread of the float CNN output (<= "
              f"{float(torch.quantile(spread, 0.25)):.3f}; median of all {float(spread.median()):.3f})\n")
        print("| model | path | layer-norm error, quiet frames | the other frames |")
        print("|---|---|---|---|")
        for spec in args.int8_models:
            label, path = student_name_and_dir(spec, "INT8_MODEL")
            model = load(path).eval()
            for fast in (True, False):
                errors = torch.cat([(_features(model, w, fast)[1] - r).norm(dim=1) / r.norm(dim=1)
                                    for w, (_f, r) in zip(waveforms, ref)])
                print(f"| {label} | {'asrc CPU path' if fast else 'torch modules'} | "
                      f"{float(errors[quiet].mean()):.3f} | {float(errors[~quiet].mean()):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
