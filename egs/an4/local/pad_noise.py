#!/usr/bin/env python3
"""A copy of a data directory whose utterances have --seconds of quiet noise before and after
them (Gaussian, --noise-db relative to the utterance's RMS; seeded), as a recording made by a
user has: the check that decoding copes with silence around the speech. FLAC + data directory.

    local/pad_noise.py data/test data/test_padded --seconds 2 --noise-db -40
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from asrc.bin._cli import ArgumentParser, command
from asrc.core.audio import read_audio
from asrc.core.constants import SAMPLE_RATE
from asrc.core.tables import Utterance, read_table
from asrc.data.datadir import write_data_dir


@command("pad_noise.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--seconds", type=float, default=2.0, help="noise before and after each utterance (default 2)")
    parser.add_argument("--noise-db", type=float, default=-40.0, help="noise level against the utterance's RMS (default -40)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    wav_scp, text, utt2spk = (read_table(src / n) for n in ("wav.scp", "text", "utt2spk"))
    rng = np.random.default_rng(args.seed)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    n = int(round(args.seconds * SAMPLE_RATE))
    utts = []
    for u in sorted(wav_scp):
        audio = read_audio(wav_scp[u], what=f"utterance {u}")
        level = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) * 10 ** (args.noise_db / 20)
        padded = np.concatenate([rng.standard_normal(n) * level, audio, rng.standard_normal(n) * level])
        path = (out / "wav" / f"{u}.flac").resolve()
        sf.write(str(path), np.clip(padded, -1, 1).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        utts.append(Utterance(u, utt2spk[u], str(path), text[u], len(padded), SAMPLE_RATE))
    write_data_dir(out, utts)
    print(f"{out}: {len(utts)} utterances, {args.seconds:g} s of noise at {args.noise_db:g} dB on either side")
    return 0


if __name__ == "__main__":
    sys.exit(main())
