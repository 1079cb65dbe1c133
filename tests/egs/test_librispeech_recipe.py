"""egs/librispeech/run.sh end to end on a tiny LibriSpeech-format corpus served from 127.0.0.1
with a tiny random Hugging Face teacher: every stage, tiny dimensions."""

import functools
import gzip
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
LETTERS = "ETAONIHSRDLUMWCFGYPBVK'XJQZ"
SUBSETS = {"train-clean-100": 24, "dev-clean": 6, "test-clean": 6}


def make_corpus(root: Path, rng: np.random.Generator):
    """LibriSpeech layout: <subset>/<spk>/<chap>/<spk>-<chap>-<utt>.flac + trans.txt."""
    words = ["HELLO", "WORLD", "TEST", "ONE", "TWO", "IT'S", "GOOD"]
    spk_base = 100
    for subset, n in SUBSETS.items():
        for s in range(2):
            spk, chap = str(spk_base + s), str(10 * (spk_base + s))
            d = root / "LibriSpeech" / subset / spk / chap
            d.mkdir(parents=True)
            lines = []
            for u in range(n // 2):
                utt = f"{spk}-{chap}-{u:04d}"
                text = " ".join(rng.choice(words, size=rng.integers(1, 3)))
                wav = (rng.normal(0, 0.1, int(16000 * rng.uniform(0.6, 1.2)))).astype(np.float32)
                sf.write(d / f"{utt}.flac", wav, 16000, subtype="PCM_16")
                lines.append(f"{utt} {text}\n")
            (d / f"{spk}-{chap}.trans.txt").write_text("".join(lines))
        spk_base += 10


def make_tarballs(corpus: Path, serve: Path) -> Path:
    serve.mkdir()
    md5_lines = []
    for subset in SUBSETS:
        path = serve / f"{subset}.tar.gz"
        with tarfile.open(path, "w:gz") as tar:
            tar.add(corpus / "LibriSpeech" / subset, arcname=f"LibriSpeech/{subset}")
        md5_lines.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {subset}.tar.gz\n")
    md5 = serve.parent / "md5sum.txt"
    md5.write_text("".join(md5_lines))
    return md5


def make_hf_teacher(path: Path):
    import torch
    import transformers

    torch.manual_seed(0)
    vocab = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list(LETTERS)
    config = transformers.Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=8, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4, feat_extract_norm="group", do_stable_layer_norm=False, pad_token_id=0,
    )
    model = transformers.Wav2Vec2ForCTC(config)
    model.save_pretrained(path)
    (path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))


def copy_recipe(dest: Path) -> Path:
    """A copy of egs/librispeech whose utils/ link still reaches egs/utils."""
    shutil.copytree(REPO / "egs" / "librispeech", dest, symlinks=True)
    (dest / "utils").unlink()
    (dest / "utils").symlink_to(REPO / "egs" / "utils")
    return dest


@pytest.fixture
def http_dir():
    servers = []

    def serve(directory: Path) -> str:
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
        handler.log_message = lambda *a: None
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.slow
def test_librispeech_recipe_all_stages(tmp_path, http_dir):
    rng = np.random.default_rng(0)
    make_corpus(tmp_path / "corpus", rng)
    md5 = make_tarballs(tmp_path / "corpus", tmp_path / "serve")
    url = http_dir(tmp_path / "serve")
    make_hf_teacher(tmp_path / "hf_teacher")
    # a word LM served beside the corpus, as openslr serves its 4-gram.arpa.gz
    words = ["HELLO", "WORLD", "TEST", "ONE", "TWO", "IT'S", "GOOD"]
    arpa = "\\data\\\nngram 1=%d\nngram 2=2\n\n\\1-grams:\n" % (len(words) + 3)
    arpa += "".join(f"-1.0\t{w}\t-0.1\n" for w in ["<unk>", "<s>", "</s>"] + words)
    arpa += "\n\\2-grams:\n-0.2\t<s> HELLO\n-0.2\tHELLO </s>\n\n\\end\\\n"
    (tmp_path / "serve" / "lm.arpa.gz").write_bytes(gzip.compress(arpa.encode()))

    recipe = copy_recipe(tmp_path / "librispeech")
    env = {**os.environ, "LIBRISPEECH": str(tmp_path / "downloads"), "LIBRISPEECH_URL": url,
           "LIBRISPEECH_MD5": str(md5), "TEACHER": str(tmp_path / "hf_teacher"), "TEACHER_FORMAT": "hf"}
    args = [
        "--subsets", " ".join(SUBSETS), "--train_subsets", "train_clean_100", "--valid_subsets", "dev_clean",
        "--test_sets", "test_clean", "--nj", "1",
        "--train_args", "--max_epoch 1 --num_workers 0 --batch_type sorted --batch_size 4 --batch_bins 0",
        "--bench_args", "--runs 1 --warmup 0 --seconds 1 --no-onnx",
        "--lm", f"{url}/lm.arpa.gz", "--lm_beam_size", "5",
    ]
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args], cwd=recipe, env=env, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]

    exp = recipe / "exp"
    for n in range(1, 12):
        assert (exp / "stages" / f"stage{n}.done").is_file(), n
    assert len((recipe / "data" / "test_clean" / "wav.scp").read_text().splitlines()) == SUBSETS["test-clean"]
    # The student has 4 layers and grouped convolutions, initialised from the 8-layer teacher.
    import yaml

    student_cfg = yaml.safe_load((exp / "student" / "model" / "config.yaml").read_text())
    assert student_cfg["num_layers"] == 4 and student_cfg["conv_groups"] == 2
    assert (exp / "student_int8" / "model" / "quantization.yaml").is_file()
    results = (exp / "RESULTS.md").read_text()
    for model in ("teacher", "student", "student_int8", "teacher_lm", "student_lm", "student_int8_lm"):
        assert f"## {model}\n" in results
    assert (exp / "lm" / "lm.arpa").read_text().startswith("\\data\\")
    lm_lines = (exp / "student_lm" / "decode_test_clean" / "text").read_text().splitlines()
    assert len(lm_lines) == SUBSETS["test-clean"]
    assert "--method beam --lm exp/lm/lm.arpa" in (exp / "logs" / "decode_student_lm_test_clean.log").read_text()
    lm_words = {w for line in lm_lines for w in line.split()[1:]}
    assert lm_words <= set(words)  # beam search with the lexicon of the LM's words
    assert set(json.loads((exp / "wer.json").read_text())) == {"teacher", "student", "student_int8"}
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in results
    assert "|test_clean|6|" in results
    footprint = json.loads((exp / "footprint.json").read_text())
    assert footprint and (exp / "footprint.png").is_file()
    assert (exp / "student_pack.zip").is_file()

    # Every stage is done: a second run redoes nothing.
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args], cwd=recipe, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("already done") == 11

    # A student narrower than the teacher (conf/distill_narrow.yaml + a student spec starting
    # from random weights): stage 6 warm-starts its front end on the teacher's features, then
    # distils with the hidden loss.
    narrow = {"layers": {"num": 4}, "init": {"from": "random"},
              "architecture": dict(conv_channels=8, conv_groups=2, embed_dim=16, ffn_dim=32, num_heads=2,
                                   pos_conv_kernel=8, pos_conv_groups=4),
              "distill": {"temperature": 2.0, "loss_weights": {"kd_loss": 0.5, "student_loss": 0.5,
                                                                "hidden_loss": 1.0}}}
    (recipe / "conf" / "tiny_narrow.yaml").write_text(yaml.safe_dump(narrow))
    shutil.rmtree(exp / "student")  # another student: not a resume of the first one
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args, "--stage", "6", "--stop_stage", "6", "--force_stages", "6",
                        "--student_spec", "conf/tiny_narrow.yaml", "--distill_config", "conf/distill_narrow.yaml",
                        "--student_init_steps", "3"], cwd=recipe, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "target teacher_features" in (exp / "student_frontend_init" / "frontend_init.log").read_text()
    student_cfg = yaml.safe_load((exp / "student" / "model" / "config.yaml").read_text())
    assert (student_cfg["embed_dim"], student_cfg["conv_layers"][0][0], student_cfg["num_layers"]) == (16, 8, 4)
    assert "hidden_loss" in (exp / "student" / "train.log").read_text()


@pytest.fixture
def logged_http_dir():
    """Like http_dir, and every requested path is appended to the returned list."""
    servers, requests = [], []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def send_head(self):
            requests.append(self.path)
            return super().send_head()

    def serve(directory: Path) -> str:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield serve, requests
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("point_at", ["parent", "LibriSpeech"])
def test_extracted_tree_without_stamps_is_not_downloaded(tmp_path, logged_http_dir, point_at):
    """An extracted LibriSpeech/ (no asrc stamps), with LIBRISPEECH at it or at its parent: stage 1
    fetches only the subset that is not there, stage 2 prepares all of them from the tree."""
    serve, requests = logged_http_dir
    make_corpus(tmp_path / "src", np.random.default_rng(0))
    md5 = make_tarballs(tmp_path / "src", tmp_path / "serve")
    url = serve(tmp_path / "serve")
    corpus = tmp_path / "my corpus"  # a space on the way: quoting
    (corpus / "LibriSpeech").mkdir(parents=True)
    for subset in ("dev-clean", "test-clean"):
        shutil.copytree(tmp_path / "src" / "LibriSpeech" / subset, corpus / "LibriSpeech" / subset)
    librispeech = corpus if point_at == "parent" else corpus / "LibriSpeech"

    recipe = copy_recipe(tmp_path / "librispeech")
    env = {**os.environ, "LIBRISPEECH": str(librispeech), "LIBRISPEECH_URL": url, "LIBRISPEECH_MD5": str(md5)}
    args = ["--subsets", "dev-clean test-clean train-clean-100", "--stop_stage", "2", "--nj", "1"]
    r = subprocess.run(["bash", str(recipe / "run.sh"), *args], cwd=recipe, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert requests and all(p.endswith("/train-clean-100.tar.gz") for p in requests), requests
    assert f"dev-clean: already extracted in {corpus / 'LibriSpeech' / 'dev-clean'}" in r.stderr
    assert (corpus / "LibriSpeech" / "train-clean-100" / ".done").is_file()
    assert not (corpus / "LibriSpeech" / "dev-clean" / ".done").exists()  # left as it was
    for subset, n in SUBSETS.items():
        wav_scp = (recipe / "data" / subset.replace("-", "_") / "wav.scp").read_text()
        assert len(wav_scp.splitlines()) == n
        assert str(corpus / "LibriSpeech" / subset) in wav_scp


def test_extracted_subsets_in_a_folder_not_named_librispeech(tmp_path, logged_http_dir):
    """LIBRISPEECH at a folder holding the subsets under another name: used when complete; a
    subset missing there is an error (archives would unpack into a LibriSpeech/ beside it)."""
    serve, requests = logged_http_dir
    make_corpus(tmp_path / "src", np.random.default_rng(0))
    md5 = make_tarballs(tmp_path / "src", tmp_path / "serve")
    corpus = tmp_path / "libri"
    shutil.copytree(tmp_path / "src" / "LibriSpeech" / "dev-clean", corpus / "dev-clean")
    recipe = copy_recipe(tmp_path / "librispeech")
    env = {**os.environ, "LIBRISPEECH": str(corpus), "LIBRISPEECH_URL": serve(tmp_path / "serve"),
           "LIBRISPEECH_MD5": str(md5)}

    def run(*args):
        return subprocess.run(["bash", str(recipe / "run.sh"), "--stop_stage", "2", "--nj", "1", *args], cwd=recipe,
                              env=env, capture_output=True, text=True, timeout=300)

    r = run("--subsets", "dev-clean test-clean")
    assert r.returncode == 1
    assert f"{corpus} holds extracted subsets but not test-clean" in r.stderr
    assert requests == [] and not (tmp_path / "LibriSpeech").exists()
    r = run("--subsets", "dev-clean")
    assert r.returncode == 0, r.stderr[-3000:]
    assert requests == []
    assert len((recipe / "data" / "dev_clean" / "wav.scp").read_text().splitlines()) == SUBSETS["dev-clean"]
