#!/usr/bin/env python3
"""Greedy CER of students built from a teacher *before any training*: what each compression
step (dropping layers, grouped convolutions, their calibration) costs at initialisation.

    local/untrained_students.py teacher data/dev data/synth/dev --calib data/train

Each student is built with :func:`asrc.models.student.build_student` from the teacher: the
layer maps and configs listed in VARIANTS, grouped-conv kernels fitted on ``--calib``'s speech
(16 utterances) or, for the rows marked "pink", on the default pink noise. Utterances are
decoded one at a time (no padding), one thread.
"""

import argparse

import torch

from asrc.core.audio import read_audio
from asrc.core.audio import read_waveforms
from asrc.core.batching import pad_waveforms
from asrc.core.tables import read_data_dir
from asrc.decode.ctc import GreedyDecoder
from asrc.models import load
from asrc.models.student import build_student
from asrc.score.scorer import score

# (name, config changes, layer_init, calibrate on speech)
VARIANTS = [
    ("4 layers, every_k", dict(num_layers=4), "every_k", True),
    ("4 layers, first_k", dict(num_layers=4), "first_k", True),
    ("4 layers, last_k", dict(num_layers=4), "last_k", True),
    ("4 layers 2, 3, 5, 6", dict(num_layers=4), [2, 3, 5, 6], True),
    ("4 layers 1, 3, 5, 6", dict(num_layers=4), [1, 3, 5, 6], True),
    ("all layers, conv_groups 2, pink", dict(conv_groups=2), "first_k", False),
    ("all layers, conv_groups 2", dict(conv_groups=2), "first_k", True),
    ("4 layers, every_k, conv_groups 2", dict(num_layers=4, conv_groups=2), "every_k", True),
]


def cer(model, sets, decoder):
    model.eval()
    out = []
    for name, utts in sets:
        refs, hyps = {}, {}
        with torch.inference_mode():
            for utt, wav, text in utts:
                logits, lengths = model(wav[None], torch.tensor([wav.numel()]))
                hyps[utt], refs[utt] = decoder(logits, lengths)[0].text, text
        total = score(refs, hyps, unit="char").total
        out.append(f"{100 * total.err / total.wrd:5.1f}")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("teacher", help="asrc model directory")
    p.add_argument("data_dirs", nargs="+", help="Kaldi-style data dirs to decode")
    p.add_argument("--calib", required=True, help="data dir whose speech fits the grouped kernels")
    a = p.parse_args()
    torch.set_num_threads(1)
    teacher = load(a.teacher).eval()
    sets = [(d, [(u.utt_id, torch.from_numpy(read_audio(u.audio)), u.text) for u in read_data_dir(d)])
            for d in a.data_dirs]
    calib, calib_lengths = pad_waveforms(read_waveforms(a.calib, max_utterances=16)[0])
    decoder = GreedyDecoder(teacher.tokens)
    print("| student (untrained) | layers | " + " | ".join(f"{d} CER %" for d in a.data_dirs) + " |")
    print("|---|---|" + "---|" * len(a.data_dirs))
    print(f"| teacher | all | " + " | ".join(cer(teacher, sets, decoder)) + " |", flush=True)
    for name, changes, layer_init, speech in VARIANTS:
        torch.manual_seed(0)
        student, report = build_student(teacher, teacher.config.replace(**changes), layer_init,
                                        calibration=calib if speech else None,
                                        calibration_lengths=calib_lengths if speech else None)
        layers = ", ".join(map(str, report.layer_map))
        print(f"| {name} | {layers} | " + " | ".join(cer(student, sets, decoder)) + " |", flush=True)


if __name__ == "__main__":
    main()
