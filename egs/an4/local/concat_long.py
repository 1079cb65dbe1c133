#!/usr/bin/env python3
"""Long recordings from a data directory: each speaker's utterances (or all, --across-speakers),
in id order, joined into recordings of up to --max-seconds (with --gap seconds of the speaker's own quietest audio
between them), their transcripts joined likewise; written as FLAC with a data directory.
The check of chunked decoding: the same speech as the short utterances, minutes at a time.

    local/concat_long.py data/test data/test_long --max-seconds 60
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


def quiet_gap(wavs, samples: int) -> np.ndarray:
    """``samples`` of background: the quietest 10 ms frames of the speaker's audio, repeated."""
    frame = SAMPLE_RATE // 100
    frames = np.concatenate([w[: len(w) // frame * frame].reshape(-1, frame) for w in wavs])
    energy = (frames ** 2).mean(axis=1)
    quiet = frames[np.argsort(energy)[: max(1, len(frames) // 20)]]
    reps = -(-samples // quiet.size)
    return np.tile(quiet.reshape(-1), reps)[:samples]


@command("concat_long.py")
def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src")
    parser.add_argument("out")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="longest recording (default 60)")
    parser.add_argument("--gap", type=float, default=0.5, help="background between utterances, seconds (default 0.5)")
    parser.add_argument("--across-speakers", action="store_true",
                        help="join all utterances in id order (speaker 'all'), not each speaker's apart")
    args = parser.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    wav_scp, text, utt2spk = (read_table(src / n) for n in ("wav.scp", "text", "utt2spk"))
    by_spk = {}
    for u in sorted(wav_scp):
        by_spk.setdefault("all" if args.across_speakers else utt2spk[u], []).append(u)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    gap = int(args.gap * SAMPLE_RATE)
    utts = []
    for spk, ids in sorted(by_spk.items()):
        wavs = [read_audio(wav_scp[u], what=f"utterance {u}") for u in ids]
        fill = quiet_gap(wavs, gap)
        groups, cur, cur_len = [], [], 0
        for u, w in zip(ids, wavs):
            if cur and cur_len + gap + len(w) > args.max_seconds * SAMPLE_RATE:
                groups.append(cur)
                cur, cur_len = [], 0
            cur.append((u, w))
            cur_len += len(w) + (gap if len(cur) > 1 else 0)
        groups.append(cur)
        for i, g in enumerate(groups):
            pieces = []
            for j, (_, w) in enumerate(g):
                if j:
                    pieces.append(fill)
                pieces.append(w)
            audio = np.concatenate(pieces).astype(np.float32)
            utt_id = f"{spk}-long{i + 1:02d}"
            path = (out / "wav" / f"{utt_id}.flac").resolve()
            sf.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
            utts.append(Utterance(utt_id, spk, str(path), " ".join(text[u] for u, _ in g), len(audio), SAMPLE_RATE))
    write_data_dir(out, utts)
    total = sum(u.num_samples for u in utts) / SAMPLE_RATE
    print(f"{out}: {len(utts)} recordings, {total:.1f} s, longest {max(u.num_samples for u in utts) / SAMPLE_RATE:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
