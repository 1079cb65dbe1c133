#!/usr/bin/env python3
"""Research loop for the AN4 raw-waveform teacher: how fast does each recipe option learn?

A small standalone CTC loop (not the product trainer) used to compare options by test CER/WER
against CPU-minutes of one thread. The findings are in ``egs/an4/RESULTS.md``; the product
recipe trains the chosen option with ``asrc-train`` (see ``run.sh``).

    python egs/an4/local/explore_teacher.py --tag init_frozen --init-minutes 2 \
        --freeze-frontend-minutes 99 --minutes 8 --out /tmp/an4_explore

Every eval point appends one JSON line to ``<out>/<tag>.jsonl``: CPU-minutes of training
(evaluation excluded; the MSE warm start included), train loss, test CER/WER (greedy CTC).
"""

import argparse
import json
import math
import os
import random
import re
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio

from asrc.models import Wav2Vec2CTC, Wav2Vec2Config, num_parameters, save_model_dir
from asrc.models.frontend_init import group_by_length

TOKENS = "<blank> <pad> </s> <unk> | E T A O N I H S R D L U M W C F G Y P B V K ' X J Q Z".split()
TOK = {t: i for i, t in enumerate(TOKENS)}


def read_split(an4: Path, split: str):
    name = {"train": "an4_train", "test": "an4_test"}[split]
    sub = {"train": "an4_clstk", "test": "an4test_clstk"}[split]
    items = []
    for line in open(an4 / "etc" / f"{name}.transcription", encoding="utf-8"):
        m = re.match(r"^(.*)\((\S+)\)\s*$", line.strip())
        text = re.sub(r"</?s>", " ", m.group(1)).split()
        uid = m.group(2)
        spk = uid.split("-")[1]
        wav, sr = sf.read(an4 / "wav" / sub / spk / f"{uid}.sph", dtype="float32")
        assert sr == 16000
        items.append((uid, torch.from_numpy(wav), " ".join(text).upper()))
    return items


def encode_text(text):
    return [TOK[c] if c != " " else TOK["|"] for c in text]


def load_data(an4, cache):
    if os.path.exists(cache):
        return torch.load(cache, weights_only=False)
    data = {s: read_split(Path(an4), s) for s in ("train", "test")}
    torch.save(data, cache)
    return data


def normalize(w):
    return (w - w.mean()) / (w.std() + 1e-5)


MEL = torchaudio.transforms.MelSpectrogram(16000, n_fft=400, win_length=400, hop_length=320, n_mels=80,
                                           center=False)


def logmel(w):
    """``[sample]`` -> ``[frame, 80]``, frames aligned with the 400/320 conv front end."""
    return torch.log(MEL(normalize(w)) + 1e-6).T


def make_batches(lengths, max_samples, shuffle, rng):
    batches = group_by_length(lengths, max_samples)
    if shuffle:
        rng.shuffle(batches)
    return batches


def collate(items, idx):
    wavs = [items[i][1] for i in idx]
    lens = torch.tensor([len(w) for w in wavs])
    x = torch.zeros(len(wavs), int(lens.max()))
    for j, w in enumerate(wavs):
        x[j, : len(w)] = w
    return x, lens


def edit_distance(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
        prev = cur
    return prev[-1]


def greedy(logits, lengths):
    out = []
    for lg, n in zip(logits, lengths):
        ids = lg[: int(n)].argmax(-1).tolist()
        s, last = [], None
        for t in ids:
            if t != last and t > 3:
                s.append(TOKENS[t])
            last = t
        out.append("".join(s).replace("|", " ").split())
    return out


@torch.no_grad()
def evaluate(model, items):
    model.eval()
    ce = cn = we = wn = 0
    batches = make_batches([len(it[1]) for it in items], 16000 * 60, False, None)
    for b in batches:
        x, lens = collate(items, b)
        logits, olens = model(x, lens)
        for hyp, i in zip(greedy(logits, olens), b):
            ref = items[i][2].split()
            we += edit_distance(ref, hyp)
            wn += len(ref)
            ce += edit_distance(" ".join(ref), " ".join(hyp))
            cn += len(" ".join(ref))
    model.train()
    return 100.0 * ce / cn, 100.0 * we / wn


def build_config(a):
    c = a.conv_channels
    return Wav2Vec2Config(
        conv_layers=[[c, 10, 5]] + [[c, 3, 2]] * 4 + [[c, 2, 2]] * 2,
        extractor_mode=a.extractor_mode, conv_bias=a.extractor_mode == "layer_norm",
        embed_dim=a.dim, ffn_dim=4 * a.dim, num_heads=4, num_layers=a.layers, layer_norm_first=True,
        pos_conv_kernel=31, pos_conv_groups=16, dropout=0.1, attention_dropout=0.1,
        mask_time_prob=a.mask_time_prob, mask_time_length=a.mask_time_length,
        mask_channel_prob=a.mask_channel_prob, mask_channel_length=a.mask_channel_length,
        normalize_waveform=bool(a.normalize), vocab_size=len(TOKENS))


class Clock:
    """CPU seconds of this process, minus the paused (evaluation) spans."""

    def __init__(self):
        self.start = time.process_time()
        self.paused = 0.0

    def minutes(self):
        return (time.process_time() - self.start - self.paused) / 60.0


def frontend_mse(model, train, a, clock, log, rng):
    """Regress normalised 80-dim log-mel from the projected CNN features for ``a.init_minutes``."""
    targets = [logmel(w) for _, w, _ in train]
    allf = torch.cat(targets)
    mu, sd = allf.mean(0), allf.std(0)
    targets = [(t - mu) / sd for t in targets]
    head = torch.nn.Linear(model.config.embed_dim, 80)
    params = (list(model.feature_extractor.parameters()) + list(model.feature_projection.parameters())
              + list(head.parameters()))
    opt = torch.optim.AdamW(params, lr=a.init_lr, weight_decay=0.0)
    step = 0
    while clock.minutes() < a.init_minutes:
        for b in make_batches([len(w) for _, w, _ in train], a.batch_seconds * 16000, True, rng):
            x, lens = collate(train, b)
            if model.config.normalize_waveform:
                x = model.normalize(x, lens)
            feats, flens = model.feature_extractor(x, lens)
            y = head(model.feature_projection(feats.transpose(1, 2)))
            tgt = torch.zeros_like(y)
            for j, i in enumerate(b):
                n = min(int(flens[j]), len(targets[i]))
                tgt[j, :n] = targets[i][:n]
            mask = (torch.arange(y.shape[1])[None, :] < flens[:, None]).unsqueeze(-1).float()
            loss = (((y - tgt) ** 2) * mask).sum() / (mask.sum() * 80)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            step += 1
            if step % 20 == 0:
                log({"phase": "mse", "step": step, "cpu_min": round(clock.minutes(), 2), "mse": round(loss.item(), 4)})
            if clock.minutes() >= a.init_minutes:
                break
    log({"phase": "mse_done", "step": step, "cpu_min": round(clock.minutes(), 2), "mse": round(loss.item(), 4)})


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--tag", required=True)
    p.add_argument("--out", default="/tmp/an4_explore")
    p.add_argument("--an4", default="/work/shared/data/an4")
    p.add_argument("--cache", default="/tmp/an4_cache.pt")
    p.add_argument("--minutes", type=float, default=8.0, help="CPU-minutes of training in total")
    p.add_argument("--eval-every", type=float, default=1.0, help="CPU-minutes between test evaluations")
    p.add_argument("--conv-channels", type=int, default=128)
    p.add_argument("--extractor-mode", default="group_norm")
    p.add_argument("--dim", type=int, default=192)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--normalize", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--batch-seconds", type=float, default=25.0)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--curriculum", type=int, default=0, help="epochs in shortest-first order")
    p.add_argument("--init-minutes", type=float, default=0.0, help="CPU-minutes of log-mel MSE warm start")
    p.add_argument("--init-lr", type=float, default=2e-3)
    p.add_argument("--init-from", default="", help="state_dict of a previous run's warm start")
    p.add_argument("--clock-offset", type=float, default=0.0,
                   help="CPU-minutes already spent on --init-from (added to the clock)")
    p.add_argument("--freeze-frontend-minutes", type=float, default=0.0,
                   help="keep the CNN front end frozen (no_grad) until this CPU-minute")
    p.add_argument("--mask-time-prob", type=float, default=0.0)
    p.add_argument("--mask-time-length", type=int, default=5)
    p.add_argument("--mask-channel-prob", type=float, default=0.0)
    p.add_argument("--mask-channel-length", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", default="", help="write the final model directory here")
    a = p.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    data = load_data(a.an4, a.cache)
    train, test = data["train"], data["test"]
    logf = open(Path(a.out) / f"{a.tag}.jsonl", "w")

    def log(d):
        d = {"tag": a.tag, **d}
        print(json.dumps(d), flush=True)
        logf.write(json.dumps(d) + "\n")
        logf.flush()

    config = build_config(a)
    model = Wav2Vec2CTC(config, TOKENS)
    log({"phase": "config", "params": num_parameters(model), "args": vars(a)})
    clock = Clock()
    clock.start -= 60.0 * a.clock_offset
    if a.init_from:
        model.load_state_dict(torch.load(a.init_from))
    if a.init_minutes > 0:
        frontend_mse(model, train, a, clock, log, rng)
        torch.save(model.state_dict(), Path(a.out) / f"{a.tag}.init.pth")

    frontend = list(model.feature_extractor.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    ctc_lens = [len(w) for _, w, _ in train]
    labels = [torch.tensor(encode_text(t)) for _, _, t in train]
    step, epoch, next_eval, losses = 0, 0, clock.minutes(), []
    done = False
    while not done:
        shuffle = epoch >= a.curriculum
        for b in make_batches(ctc_lens, a.batch_seconds * 16000, shuffle, rng):
            if clock.minutes() >= next_eval:
                t0 = time.process_time()
                cer, wer = evaluate(model, test)
                clock.paused += time.process_time() - t0
                log({"phase": "ctc", "step": step, "epoch": epoch, "cpu_min": round(clock.minutes(), 2),
                     "loss": round(float(np.mean(losses)) if losses else float("nan"), 3),
                     "cer": round(cer, 1), "wer": round(wer, 1)})
                losses = []
                next_eval += a.eval_every
                if clock.minutes() >= a.minutes:
                    done = True
                    break
            frozen = clock.minutes() < a.freeze_frontend_minutes
            for q in frontend:
                q.requires_grad_(not frozen)
            lr = a.lr * min(1.0, (step + 1) / a.warmup)
            for g in opt.param_groups:
                g["lr"] = lr
            x, lens = collate(train, b)
            y = [labels[i] for i in b]
            ylens = torch.tensor([len(t) for t in y])
            out = model.encode(x, lens, apply_mask=True)
            logits = model.ctc_head(model.final_dropout(out.x))
            lp = logits.log_softmax(-1).transpose(0, 1)
            loss = F.ctc_loss(lp, torch.cat(y), out.lengths, ylens, blank=0, reduction="sum",
                              zero_infinity=True) / len(b)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
            opt.step()
            losses.append(loss.item())
            step += 1
        epoch += 1
    if a.save:
        save_model_dir(model.eval(), a.save)


if __name__ == "__main__":
    main()
