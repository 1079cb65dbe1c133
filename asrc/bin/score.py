"""Score a decoded ``text`` against a reference ``text`` (WER, and CER with ``--cer``).

    asrc-score --ref data/test/text --hyp exp/student/decode_test/text \\
        --out exp/student/decode_test --utt2spk data/test/utt2spk --cer

writes ``OUT/score_wer/`` (and ``OUT/score_cer/``): ``ref.trn``, ``hyp.trn``, ``result.txt``
(sclite's report when sclite is installed, else the built-in scorer's), ``score.json``,
``per_utt.tsv`` and ``alignments_worst.txt``, and prints one ``%WER``/``%CER`` line each.

Errors name ``--ref``, ``--hyp`` or ``--utt2spk`` and the line or utterance id as written there
(:func:`asrc.score.scorer.read_text`, :func:`asrc.score.scorer.check_transcripts`); every unit
is checked before anything is written.
"""

import argparse
import sys

from asrc.bin._cli import ArgumentParser, command
from asrc.score.scorer import check_transcripts, read_text, score_dir


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="asrc-score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="reference Kaldi text file (utt WORDS...)")
    p.add_argument("--hyp", required=True, help="hypothesis Kaldi text file (utt WORDS...)")
    p.add_argument("--out", required=True, help="output directory (score_wer/, score_cer/ go inside)")
    p.add_argument("--utt2spk", help="utt2spk for the speaker part of trn ids (default: utterance id)")
    p.add_argument("--cer", action="store_true", help="also score characters (<space> as word boundary)")
    p.add_argument(
        "--sclite",
        choices=["auto", "yes", "no"],
        default="auto",
        help="run sclite: when installed (auto), always (yes: error if missing), never (no)",
    )
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="score reference utterances without hypothesis as empty (listed in score.json) instead of failing",
    )
    p.add_argument("--worst", type=int, default=50, help="utterances in alignments_worst.txt (default 50)")
    return p


@command("asrc-score")
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    refs = read_text(args.ref)
    hyps = read_text(args.hyp)
    utt2spk = read_text(args.utt2spk) if args.utt2spk else None
    use_sclite = {"auto": "auto", "yes": True, "no": False}[args.sclite]
    units = ["word", "char"] if args.cer else ["word"]
    names = dict(ref_name=args.ref, hyp_name=args.hyp, utt2spk_name=args.utt2spk or "utt2spk")
    check_transcripts(refs, hyps, units, utt2spk=utt2spk, **names)
    for unit in units:
        result = score_dir(
            refs,
            hyps,
            f"{args.out}/score_{'wer' if unit == 'word' else 'cer'}",
            unit=unit,
            utt2spk=utt2spk,
            allow_missing=args.allow_missing,
            use_sclite=use_sclite,
            worst=args.worst,
            **names,
        )
        print(f"{result.summary()}  {result.out_dir}")
        if result.missing_hyp:
            print(f"warning: {len(result.missing_hyp)} utterance(s) had no hypothesis and were scored as empty", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
