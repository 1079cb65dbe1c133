"""asrc-convert: a Hugging Face or fairseq wav2vec 2.0 / HuBERT checkpoint -> an asrc model directory.

Usage:
    asrc-convert --from hf wav2vec2-base-960h/ exp/teacher
    asrc-convert --from hf hubert-large-ls960-ft/ exp/teacher
    asrc-convert --from hf hubert-base-ls960/ exp/pretrained --dict dict.ltr.txt  # bare model: untrained head
    asrc-convert --from fairseq wav2vec_small_960h.pt exp/teacher --dict dict.ltr.txt
    asrc-convert --from fairseq wav2vec_small.pt exp/pretrained --dict dict.ltr.txt  # untrained head

The output (``config.yaml``, ``model.pth``, ``tokens.txt``) loads with ``asrc.models.load``.
Conversion needs neither transformers nor fairseq. fairseq checkpoints are pickles: convert
only files you trust.
"""

import argparse
import sys

from asrc.bin._cli import ArgumentParser, command
from asrc.errors import AsrcError
from asrc.models.import_fairseq import convert_fairseq, read_fairseq_dict
from asrc.models.import_hf import convert_hf
from asrc.models.io import is_model_dir


def get_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="asrc-convert", description=__doc__.split("\n")[0],
                            epilog=__doc__.split("\n", 2)[2],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source_format", required=True, choices=("hf", "fairseq"),
                        help="hf: a Wav2Vec2ForCTC / HubertForCTC folder (or a bare Wav2Vec2Model / HubertModel / "
                             "Wav2Vec2ForPreTraining one, with --dict); fairseq: a wav2vec 2.0 or HuBERT .pt checkpoint")
    parser.add_argument("src", help="Hugging Face folder or fairseq .pt file")
    parser.add_argument("out", help="model directory to write")
    parser.add_argument("--dict", dest="dict_path",
                        help="fairseq dictionary (dict.ltr.txt). fairseq: default dict.ltr.txt beside SRC; "
                             "hf: only for a folder without lm_head (the CTC head is then untrained)")
    parser.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                        help="per-utterance waveform normalisation in the model (default: from the checkpoint: "
                             "hf preprocessor_config.json do_normalize, fairseq task normalize)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model directory OUT")
    return parser


@command("asrc-convert")
def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if is_model_dir(args.out) and not args.overwrite:
        raise AsrcError(f"{args.out} already holds a model; pass --overwrite to replace it")
    if args.source_format == "hf":
        tokens = read_fairseq_dict(args.dict_path) if args.dict_path else None
        imported = convert_hf(args.src, args.out, normalize=args.normalize, tokens=tokens)
    else:
        imported = convert_fairseq(args.src, args.out, dict_path=args.dict_path, normalize=args.normalize)
    for line in imported.report():
        print(line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
