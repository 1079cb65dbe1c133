"""asrc-data: corpora to Kaldi-style data directories, token lists and checks.

Usage:
    asrc-data download-librispeech downloads [--subsets dev-clean test-clean] [--source DIR]
    asrc-data prepare-librispeech downloads/LibriSpeech data --nj 4
    asrc-data download-an4 downloads [--source ../shared/data/an4]
    asrc-data prepare-an4 downloads/an4 data
    asrc-data synth db/synth --subsets train:400,dev:60,test:60 --nj 2
    asrc-data prepare-librispeech db/synth data
    asrc-data tokens data/tokens.txt --type letter
    asrc-data tokens data/bpe/tokens.txt --type bpe --text data/train_960/text --vocab-size 300
    asrc-data validate data/dev_clean --tokens data/tokens.txt
    asrc-data validate data/dev_clean --deep        # also decode every file and run cmd | pipes
    asrc-data combine data/train_all data/train_clean_100 data/train_clean_360
    asrc-data copy data/train data/train_rep1 --prefix rep1-

Each command is a thin wrapper over a function of :mod:`asrc.data`.
"""

import argparse
import logging
import sys
from pathlib import Path

from asrc.bin._cli import ArgumentParser, command


def _read_md5_file(path):
    """``md5sum`` output (``<md5>  <subset>.tar.gz`` per line) -> ``{subset: md5}``."""
    md5s = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or len(parts[0]) != 32:
                raise SystemExit(f"{path}:{n}: expected '<md5> <name>.tar.gz', got {line.strip()!r}")
            name = parts[1].lstrip("*").rsplit("/", 1)[-1]
            md5s[name[:-len(".tar.gz")] if name.endswith(".tar.gz") else name] = parts[0]
    return md5s


def _download_librispeech(args):
    from asrc.data.librispeech import MIRRORS, OPENSLR_URL, download_librispeech

    root = download_librispeech(
        args.subsets,
        args.dest,
        base_url=args.base_url or OPENSLR_URL,
        mirrors=MIRRORS if args.mirror is None else args.mirror,
        source=args.source,
        md5s=_read_md5_file(args.md5_file) if args.md5_file else None,
        keep_archives=not args.remove_archives,
        progress=not args.no_progress,
    )
    print(root)
    return 0


def _prepare_librispeech(args):
    from asrc.data.librispeech import prepare_librispeech

    written = prepare_librispeech(
        args.corpus, args.out, subsets=args.subsets, nj=args.nj, combine=not args.no_combine,
        expected_sr=args.sample_rate, progress=not args.no_progress,
    )
    _summarise(written)
    return 0


def _download_an4(args):
    from asrc.data.an4 import AN4_MIRRORS, AN4_URL, download_an4

    root = download_an4(args.dest, url=args.url or AN4_URL, mirrors=AN4_MIRRORS if args.url is None else (),
                        source=args.source, progress=not args.no_progress)
    print(root)
    return 0


def _download_lm(args):
    from asrc.data.download import fetch_lm

    print(fetch_lm(args.src, args.dest, md5=args.md5, progress=not args.no_progress))
    return 0


def _prepare_an4(args):
    from asrc.data.an4 import prepare_an4

    _summarise(prepare_an4(args.an4_root, args.out, dev_fraction=args.dev_fraction))
    return 0


def _synth(args):
    from asrc.data.synth import synthesize_corpus

    subsets = {}
    for item in args.subsets.split(","):
        name, _, count = item.partition(":")
        if not name or not count.isdigit():
            raise SystemExit(f"asrc-data synth: --subsets wants name:count[,name:count], got {item!r}")
        if name in subsets:
            raise SystemExit(f"asrc-data synth: --subsets names {name!r} twice ({args.subsets!r})")
        subsets[name] = int(count)
    counts = synthesize_corpus(
        args.out, subsets, utts_per_speaker=args.utts_per_speaker, text_file=args.text, seed=args.seed,
        nj=args.nj, engines=args.engines.split(",") if args.engines else None, progress=not args.no_progress,
        first_speaker=args.first_speaker, overwrite=args.overwrite,
    )
    for subset, n in counts.items():
        print(f"{args.out / subset}: {n} utterances")
    print(f"speakers: {args.out / 'SPEAKERS.tsv'}")
    return 0


def _tokens(args):
    from asrc.data.tokens import bpe_tokens, letter_tokens, train_bpe
    from asrc.core.tables import write_tokens

    if args.type == "letter":
        tokens = letter_tokens(sos_eos=bool(args.sos_eos))
    else:
        if args.text is None or args.vocab_size is None:
            raise SystemExit("asrc-data tokens --type bpe needs --text and --vocab-size")
        prefix = args.model_prefix or Path(args.out).with_name(f"bpe{args.vocab_size}")
        model = train_bpe(args.text, prefix, args.vocab_size, model_type=args.bpe_model_type,
                          has_ids=not args.plain_text)
        tokens = bpe_tokens(model, sos_eos=args.sos_eos is not False)
        print(f"sentencepiece model: {model}")
    write_tokens(args.out, tokens)
    print(f"{args.out}: {len(tokens)} tokens")
    return 0


def _validate(args):
    from asrc.data.datadir import validate_data_dir
    from asrc.core.tables import read_tokens

    token_list = read_tokens(args.tokens) if args.tokens else None
    status = 0
    for data_dir in args.dirs:
        problems = validate_data_dir(data_dir, token_list=token_list, expected_sr=args.sample_rate or None,
                                     check_audio=not args.no_audio, nj=args.nj, deep=args.deep,
                                     require_text=not args.untranscribed_ok, mix_channels=args.mix_channels)
        for problem in problems:
            print(f"{data_dir}: {problem}")
        if problems:
            print(f"{data_dir}: {len(problems)} problem(s)", file=sys.stderr)
            status = 1
        else:
            print(f"{data_dir}: OK", file=sys.stderr)
    return status


def _combine(args):
    from asrc.data.datadir import combine_data_dirs

    _summarise({Path(args.out).name: combine_data_dirs(args.out, args.sources,
                                                                  untranscribed_ok=args.untranscribed_ok)})
    return 0


def _copy(args):
    from asrc.data.datadir import copy_data_dir

    _summarise({Path(args.out).name: copy_data_dir(args.src, args.out, args.prefix,
                                                             drop_text=args.drop_text)})
    return 0


def _summarise(written):
    from asrc.data.datadir import LOST_CHARS_FILE, SKIPPED_FILE

    for name, path in written.items():
        counts = {}
        for report in ("wav.scp", "text", SKIPPED_FILE, LOST_CHARS_FILE):
            if (Path(path) / report).is_file():
                with open(Path(path) / report, encoding="utf-8") as f:
                    counts[report] = sum(1 for _ in f)
        note = ""
        if counts.get("text", 0) < counts["wav.scp"]:
            note += f", {counts['wav.scp'] - counts.get('text', 0)} untranscribed"
        if counts.get(SKIPPED_FILE):
            note += f", {counts[SKIPPED_FILE]} skipped (see {Path(path) / SKIPPED_FILE})"
        if counts.get(LOST_CHARS_FILE):
            note += (f", {counts[LOST_CHARS_FILE]} transcript(s) lost characters with no ASCII spelling "
                     f"(see {Path(path) / LOST_CHARS_FILE})")
        print(f"{path}: {counts['wav.scp']} utterances{note}")


def build_parser():
    parser = ArgumentParser(
        prog="asrc-data",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # --verbose (ArgumentParser's: the traceback of an error) also turns on debug logging.
    parser.add_argument("-v", dest="verbose", action="store_true", help="same as --verbose")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=argparse.ArgumentParser)

    p = sub.add_parser("download-librispeech", help="fetch and unpack LibriSpeech subsets")
    p.add_argument("dest", type=Path, help="folder for archives and LibriSpeech/")
    p.add_argument("--subsets", nargs="+", default=None, help="default: all seven")
    p.add_argument("--source", type=Path, help="local folder or tarball instead of the network")
    p.add_argument("--base-url", help="default https://www.openslr.org/resources/12")
    p.add_argument("--mirror", action="append", help="mirror base URL (repeatable; default openslr's mirrors)")
    p.add_argument("--md5-file", type=Path,
                   help="md5sum-style list (<md5>  <subset>.tar.gz) replacing the published sums")
    p.add_argument("--remove-archives", action="store_true", help="delete each .tar.gz once extracted")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_download_librispeech)

    p = sub.add_parser("prepare-librispeech", help="LibriSpeech-layout corpus -> data/<set> directories")
    p.add_argument("corpus", type=Path, help="the LibriSpeech folder (or a synthetic corpus)")
    p.add_argument("out", type=Path, help="output folder (data)")
    p.add_argument("--subsets", nargs="+", default=None, help="default: every subset present")
    p.add_argument("--nj", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--no-combine", action="store_true", help="do not write train_960 / dev")
    p.add_argument("--sample-rate", type=int, default=16000, help="expected rate; others are skipped")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_prepare_librispeech)

    p = sub.add_parser("download-an4", help="fetch and unpack the CMU AN4 corpus")
    p.add_argument("dest", type=Path)
    p.add_argument("--url", help="default the CMU address, then a public mirror")
    p.add_argument("--source", type=Path, help="local an4 folder or an4_sphere.tar.gz")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_download_an4)

    p = sub.add_parser("download-lm", help="an ARPA n-gram LM from a URL or a local file (.gz decompressed)")
    p.add_argument("src", help="http(s) URL or local file, e.g. https://www.openslr.org/resources/11/4-gram.arpa.gz")
    p.add_argument("dest", type=Path, help="the ARPA file to write")
    p.add_argument("--md5", help="expected MD5 of the downloaded (or given) file")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_download_lm)

    p = sub.add_parser("prepare-an4", help="AN4 -> data/{train,dev,test}")
    p.add_argument("an4_root", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--dev-fraction", type=float, default=0.1, help="training speakers held out (default 0.1)")
    p.set_defaults(func=_prepare_an4)

    p = sub.add_parser("synth", help="synthesise a LibriSpeech-layout corpus with TTS")
    p.add_argument("out", type=Path)
    p.add_argument("--subsets", default="train:200,dev:40,test:40", help="name:utterances,... (default %(default)s)")
    p.add_argument("--utts-per-speaker", type=int, default=20)
    p.add_argument("--text", type=Path, help="sentences, one per line (LJ Speech metadata accepted); "
                   "default: built-in numbers/dates/letters/commands")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nj", type=int, default=2)
    p.add_argument("--engines", help="comma list of piper,espeak,flite,festival (default: those available)")
    p.add_argument("--first-speaker", type=int, default=1000,
                   help="first speaker id (default %(default)s); corpora to be combined need disjoint ids")
    p.add_argument("--overwrite", action="store_true",
                   help="OUT holds a corpus made with other settings: delete it and make this one (without: an "
                        "error; with the same settings a rerun resumes either way)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_synth)

    p = sub.add_parser("tokens", help="write a token list (letters or sentencepiece BPE)")
    p.add_argument("out", type=Path, help="tokens.txt to write")
    p.add_argument("--type", choices=("letter", "bpe"), default="letter")
    p.add_argument("--text", type=Path, help="bpe: Kaldi text file to train on")
    p.add_argument("--plain-text", action="store_true", help="bpe: --text has no utterance ids")
    p.add_argument("--vocab-size", type=int, help="bpe: sentencepiece vocabulary size")
    p.add_argument("--bpe-model-type", default="unigram", choices=("unigram", "bpe"))
    p.add_argument("--model-prefix", type=Path, help="bpe: model path prefix (default next to OUT)")
    p.add_argument("--sos-eos", action=argparse.BooleanOptionalAction, default=None,
                   help="append <sos/eos> last (default: no for letters, keeping fairseq's 32; yes for bpe)")
    p.set_defaults(func=_tokens)

    p = sub.add_parser("validate", help="check data directories; exit 1 on any problem")
    p.add_argument("dirs", nargs="+", type=Path)
    p.add_argument("--tokens", type=Path, help="token list: report characters outside it")
    p.add_argument("--untranscribed-ok", action="store_true",
                   help="accept utterances without a transcript (distillation data)")
    p.add_argument("--sample-rate", type=int, default=16000, help="expected rate, 0 = any (default 16000)")
    p.add_argument("--mix-channels", action="store_true",
                   help="accept multi-channel audio (to decode with asrc-decode --mix-channels); default: mono only")
    p.add_argument("--no-audio", action="store_true", help="skip reading audio headers")
    p.add_argument("--deep", action="store_true",
                   help="decode every audio file in full (truncation, NaN/Inf) and run cmd | pipes")
    p.add_argument("--nj", type=int, default=1)
    p.set_defaults(func=_validate)

    p = sub.add_parser("combine", help="union of data directories")
    p.add_argument("out", type=Path)
    p.add_argument("sources", nargs="+", type=Path)
    p.add_argument("--untranscribed-ok", action="store_true",
                   help="sources without text are untranscribed (distillation data): text holds the others'")
    p.set_defaults(func=_combine)

    p = sub.add_parser("copy", help="copy a data directory with prefixed utterance and speaker ids")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--prefix", required=True, help="prepended to every utterance and speaker id (e.g. rep1-)")
    p.add_argument("--drop-text", action="store_true", help="leave text out: untranscribed audio for distillation")
    p.set_defaults(func=_copy)
    return parser


@command("asrc-data")
def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
