#!/usr/bin/env python3
"""AN4 test made --db quieter (float WAV, nothing lost to rounding), decoded by --model three
ways: --segment vad as asrc-transcribe does it now (the speech detector hears quiet recordings
amplified), --segment vad with the detector given the audio as it is (asrc before 2026-12-07),
and --segment none; each scored (sclite, WER and CER). Writes OUT/<way>/ and prints one line each.

    local/quiet_vad.py --model teacher --data data/test --out exp/long/quiet45 --db -45
"""
import argparse
import sys
from pathlib import Path

import soundfile as sf

from asrc.bin._cli import ArgumentParser, command
from asrc.core.audio import read_audio
from asrc.core.constants import SAMPLE_RATE
from asrc.core.tables import read_table


@command("quiet_vad.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--db", type=float, default=-45.0, help="level change in dB (default -45)")
    args = parser.parse_args(argv)
    import asrc.decode.longform as longform
    from asrc.bin.score import main as score
    from asrc.decode.decode_dir import decode_dir
    from asrc.decode.options import DecodeOptions

    src, out = Path(args.data), Path(args.out)
    data = out / "data"
    (data / "wav").mkdir(parents=True, exist_ok=True)
    with open(data / "wav.scp", "w", encoding="utf-8") as f:
        for utt, spec in read_table(src / "wav.scp").items():
            path = (data / "wav" / f"{utt}.wav").resolve()
            sf.write(path, read_audio(spec, what=f"utterance {utt}") * 10 ** (args.db / 20), SAMPLE_RATE,
                     subtype="FLOAT")
            f.write(f"{utt} {path}\n")
    for name in ("text", "utt2spk", "spk2utt"):
        if (src / name).is_file():
            (data / name).write_text((src / name).read_text(encoding="utf-8"), encoding="utf-8")
    amplified = longform.detector_level
    ways = {"vad": ("vad", amplified), "vad_as_is": ("vad", lambda wav: wav), "none": ("none", amplified)}
    for way, (segment, level) in ways.items():
        longform.detector_level = level
        try:
            decode_dir(data, args.model, out / way, DecodeOptions(segment=segment))
        finally:
            longform.detector_level = amplified
        score(["--ref", str(data / "text"), "--hyp", str(out / way / "text"), "--out", str(out / way), "--cer"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
