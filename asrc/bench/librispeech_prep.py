"""LibriSpeech preparation speed: asrc vs lhotse on a full-size tree of tiny FLAC files.

Builds a tree with LibriSpeech's real structure (7 subsets, 2,484 speakers, their chapters,
292,367 utterances at --scale 1, ``<spk>-<chap>.trans.txt`` with transcripts of realistic
length), whose audio files are tiny valid FLACs (a few hundred samples; hard links to 16
distinct files unless --copy). Then, in one run, each tool is run once to warm the cache and
once timed, each as a fresh process::

    asrc-data prepare-librispeech TREE OUT --nj J
    lhotse prepare librispeech -j J TREE OUT

and a table gives wall time, utterances/s, the speed ratio and peak memory (the largest
resident set of the tool's process tree, sampled every 20 ms; the tree sum counts the
workers' shared pages once per process, so it is an upper bound).

Usage:
    asrc-bench librispeech-prep                       # full scale, about 5 min with lhotse
    asrc-bench librispeech-prep --scale 0.05 --json bench.json
"""

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (speakers, chapters, utterances) per subset; speakers and utterances are LibriSpeech's,
# chapters approximately so.
LAYOUT = {
    "train-clean-100": (251, 585, 28539),
    "train-clean-360": (921, 2676, 104014),
    "train-other-500": (1166, 2936, 148688),
    "dev-clean": (40, 97, 2703),
    "dev-other": (33, 91, 2864),
    "test-clean": (40, 87, 2620),
    "test-other": (33, 90, 2939),
}
_WORDS = (
    "THE OF AND TO A IN THAT HE WAS IT HIS I WITH AS HAD FOR YOU HER BUT NOT BE SHE AT ON "
    "IS HIM THEY BY SAID ALL SO FROM WHICH WE HAVE WERE ONE MY THIS ME NO WHEN THERE OR AN "
    "THEM WOULD WHAT IF YOUR OUT LITTLE UPON COULD WHO MORE THEN DON'T GREAT MAN'S TIME "
    "BEFORE EVERY NIGHT SOMETHING CHILDREN BEAUTIFUL REMEMBERED ALTHOUGH UNDERSTANDING"
).split()


def add_arguments(parser):
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the 292,367 utterances (default 1)")
    parser.add_argument("--nj", type=int, default=2, help="jobs for both tools (default 2)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the tree goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the tree and outputs")
    parser.add_argument("--copy", action="store_true", help="copy each FLAC instead of hard-linking 16 files")
    parser.add_argument("--skip-lhotse", action="store_true", help="time asrc only")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")


def run(args) -> int:
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="asrc_bench_ls_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        tree, counts = build_tree(work / "LibriSpeech", args.scale, copy=args.copy)
        n_utts, n_spk = sum(c[2] for c in counts.values()), sum(c[0] for c in counts.values())
        print(f"tree: {n_utts} utterances, {n_spk} speakers, {len(counts)} subsets in {tree} "
              f"(built in {time.perf_counter() - t0:.1f} s)", flush=True)
        bindir = Path(sys.executable).parent
        asrc_cmd = [sys.executable, "-m", "asrc.bin.data", "prepare-librispeech", "--nj", str(args.nj),
                    "--no-progress", str(tree), str(work / "out_asrc")]
        tools = {"asrc": (asrc_cmd, work / "out_asrc")}
        if not args.skip_lhotse:
            lhotse = shutil.which("lhotse", path=str(bindir)) or shutil.which("lhotse")
            if lhotse is None:
                print("lhotse not found; use --skip-lhotse", file=sys.stderr)
                return 1
            tools["lhotse"] = ([lhotse, "prepare", "librispeech", "-j", str(args.nj), str(tree),
                                str(work / "out_lhotse")], work / "out_lhotse")
        results = {}
        for name, (cmd, out) in tools.items():
            for phase in ("warm-up", "timed"):
                shutil.rmtree(out, ignore_errors=True)
                print(f"{name} ({phase}): {' '.join(cmd)}", flush=True)
                results[name] = measure(cmd)
                if results[name]["returncode"] != 0:
                    print(f"{name} failed:\n{results[name]['stderr'][-3000:]}", file=sys.stderr)
                    return 1
        lines = _check_asrc_output(work / "out_asrc", counts)
        report = {
            "utterances": n_utts,
            "speakers": n_spk,
            "nj": args.nj,
            "cpu_count": os.cpu_count(),
            "files": "copies" if args.copy else "hard links to 16 tiny FLACs",
            "asrc_output_utterances": lines,
            "tools": {name: {k: v for k, v in r.items() if k != "stderr"} for name, r in results.items()},
        }
        for r in report["tools"].values():
            r["utt_per_s"] = n_utts / r["seconds"]
        if "lhotse" in results:
            report["speedup_vs_lhotse"] = results["lhotse"]["seconds"] / results["asrc"]["seconds"]
        _print_table(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        return 0
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def build_tree(root: Path, scale: float = 1.0, copy: bool = False, seed: int = 0):
    """Write the benchmark corpus under ``root``; returns ``(root, {subset: (spk, chap, utts)})``.

    Idempotent: a tree already there with the same layout (``root/.layout``) is reused.
    """
    import numpy as np
    import soundfile as sf

    counts = {}
    for subset, (spk, chap, utt) in LAYOUT.items():
        n_utt = max(1, round(utt * scale))
        n_spk = max(1, min(n_utt, round(spk * scale)) if scale < 1 else spk)
        n_chap = max(n_spk, min(n_utt, round(chap * scale) if scale < 1 else chap))
        counts[subset] = (n_spk, n_chap, n_utt)
    signature = json.dumps({"counts": counts, "copy": copy, "seed": seed})
    if (root / ".layout").is_file() and (root / ".layout").read_text() == signature:
        return root, counts
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = random.Random(seed)
    sources = []
    for i in range(16):
        path = root / f".source{i}.flac"
        noise = np.random.default_rng(i).normal(0, 300, 160 + 40 * i).astype(np.int16)
        sf.write(path, noise, 16000, subtype="PCM_16")
        sources.append(str(path))
    next_speaker = 19
    for subset, (n_spk, n_chap, n_utt) in counts.items():
        chapters_per_spk = _split(n_chap, n_spk)
        utts_per_chap = _split(n_utt, n_chap)
        k = 0
        for n_c in chapters_per_spk:
            speaker = str(next_speaker)
            next_speaker += rng.randint(1, 7)
            first_chapter = 100000 + rng.randint(0, 800000)
            for c in range(n_c):
                chapter = str(first_chapter + 7 * c)
                chapter_dir = root / subset / speaker / chapter
                chapter_dir.mkdir(parents=True)
                lines = []
                for u in range(utts_per_chap[k]):
                    utt = f"{speaker}-{chapter}-{u:04d}"
                    target = chapter_dir / f"{utt}.flac"
                    source = sources[rng.randrange(16)]
                    if copy:
                        shutil.copyfile(source, target)
                    else:
                        os.link(source, target)
                    n_words = max(1, int(rng.gauss(30 if subset.startswith("train") else 20, 10)))
                    lines.append(f"{utt} {' '.join(rng.choice(_WORDS) for _ in range(n_words))}\n")
                k += 1
                (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    (root / ".layout").write_text(signature)
    return root, counts


def _split(total: int, parts: int):
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def measure(cmd):
    """Run ``cmd``; wall seconds, peak RSS (largest process and process-tree sum, MB), stderr."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        peak_tree = peak_one = 0
        while proc.poll() is None:
            rss = [_rss_kb(pid) for pid in _process_tree(proc.pid)]
            if rss:
                peak_tree, peak_one = max(peak_tree, sum(rss)), max(peak_one, max(rss))
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    return {
        "seconds": seconds,
        "peak_rss_mb": peak_one / 1024,
        "peak_tree_rss_mb": peak_tree / 1024,
        "returncode": proc.returncode,
        "stderr": stderr,
    }


def _process_tree(pid):
    pids, frontier = [pid], [pid]
    while frontier:
        p = frontier.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
                pids.extend(children)
                frontier.extend(children)
        except OSError:
            continue
    return pids


def _rss_kb(pid) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _check_asrc_output(out: Path, counts) -> int:
    """Utterances in asrc's per-subset wav.scp files; raises if any subset came out short."""
    total = 0
    for subset, (_, _, n_utt) in counts.items():
        with open(out / subset.replace("-", "_") / "wav.scp") as f:
            n = sum(1 for _ in f)
        if n != n_utt:
            raise RuntimeError(f"asrc wrote {n} utterances for {subset}, the tree has {n_utt}")
        total += n
    return total


def _print_table(report):
    print()
    print(f"LibriSpeech preparation, {report['utterances']:,} utterances, {report['speakers']:,} speakers, "
          f"nj={report['nj']}, {report['cpu_count']} CPUs, warm cache, {report['files']}")
    print("| tool | seconds | utt/s | peak RSS, largest process (MB) | peak RSS, process tree (MB) |")
    print("|---|---:|---:|---:|---:|")
    for name, r in report["tools"].items():
        print(f"| {name} | {r['seconds']:.2f} | {r['utt_per_s']:,.0f} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_tree_rss_mb']:.0f} |")
    if "speedup_vs_lhotse" in report:
        print(f"asrc is {report['speedup_vs_lhotse']:.1f}x faster than lhotse")


if __name__ == "__main__":  # python -m asrc.bench.librispeech_prep, before asrc-bench registers it
    import argparse

    _parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(_parser)
    sys.exit(run(_parser.parse_args()))
