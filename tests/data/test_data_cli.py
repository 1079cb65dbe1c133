import pytest

from asrc.bin.data import main
from asrc.core.tables import read_tokens
from asrc.data.tokens import letter_tokens


def test_prepare_validate_combine(tmp_path, tiny_corpus, librispeech_tree, capsys):
    librispeech_tree(tiny_corpus, "test-clean", tiny={"5": {"50": [(0, 1000, "FIVE")]}})
    assert main(["prepare-librispeech", str(tiny_corpus), str(tmp_path / "data"), "--nj", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'data' / 'dev_clean'}: 5 utterances" in out
    assert main(["tokens", str(tmp_path / "tokens.txt")]) == 0
    assert read_tokens(tmp_path / "tokens.txt") == letter_tokens()
    data = tmp_path / "data"
    assert main(["validate", str(data / "dev_clean"), str(data / "test_clean"), "--tokens",
                 str(tmp_path / "tokens.txt")]) == 0
    assert main(["combine", str(data / "all"), str(data / "dev_clean"), str(data / "test_clean")]) == 0
    assert f"{data / 'all'}: 6 utterances" in capsys.readouterr().out
    # A fault: exit status 1 and one line per problem naming the utterance.
    (data / "all" / "text").write_text((data / "all" / "text").read_text().replace("FIVE", "5"))
    assert main(["validate", str(data / "all"), "--tokens", str(tmp_path / "tokens.txt")]) == 1
    captured = capsys.readouterr()
    assert captured.out == f"{data / 'all'}: text: 5-50-0000: characters not in the token list: '5'\n"
    assert "1 problem(s)" in captured.err


def test_tokens_bpe_and_errors(tmp_path, capsys):
    text = tmp_path / "text"
    text.write_text("".join(f"u{i} HELLO WORLD NUMBER {'ABCDEFG'[i % 7]} AGAIN AND AGAIN\n" for i in range(100)))
    assert main(["tokens", str(tmp_path / "bpe" / "tokens.txt"), "--type", "bpe", "--text", str(text),
                 "--vocab-size", "21"]) == 0
    tokens = read_tokens(tmp_path / "bpe" / "tokens.txt")
    assert tokens[:2] == ["<blank>", "<unk>"] and tokens[-1] == "<sos/eos>"
    assert (tmp_path / "bpe" / "bpe21.model").is_file()
    assert main(["tokens", str(tmp_path / "t.txt"), "--sos-eos"]) == 0
    assert read_tokens(tmp_path / "t.txt")[-1] == "<sos/eos>"
    assert main(["prepare-librispeech", str(tmp_path / "nowhere"), str(tmp_path / "d")]) == 1
    assert "error: prepare_librispeech: no corpus folder" in capsys.readouterr().err


def test_prepare_an4_cli(an4_root, tmp_path, capsys):
    assert main(["prepare-an4", an4_root, str(tmp_path / "data")]) == 0
    assert f"{tmp_path / 'data' / 'test'}: 130 utterances" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "data" / "test"), "--nj", "2"]) == 0


def test_download_librispeech_cli_md5_file(tmp_path, tiny_corpus, server, capsys):
    import hashlib
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tiny_corpus / "dev-clean", arcname="LibriSpeech/dev-clean")
    body = buf.getvalue()
    server.files["/dev-clean.tar.gz"] = body
    md5_file = tmp_path / "md5sum.txt"
    md5_file.write_text(f"{hashlib.md5(body).hexdigest()}  dev-clean.tar.gz\n")
    args = ["download-librispeech", str(tmp_path / "dl"), "--subsets", "dev-clean", "--base-url", server.url,
            "--mirror", server.url, "--no-progress"]
    assert main(args + ["--md5-file", str(md5_file)]) == 0
    assert sorted(p.name for p in (tmp_path / "dl" / "LibriSpeech" / "dev-clean").iterdir()
                  if not p.name.startswith(".")) == ["103", "1034", "19"]
    # Without the file the published sum applies, and the tiny archive fails it, named.
    assert main(args[:1] + [str(tmp_path / "dl2")] + args[2:]) == 1
    assert "dev-clean" in capsys.readouterr().err
    md5_file.write_text("not-an-md5 dev-clean.tar.gz\n")
    with pytest.raises(SystemExit, match="md5sum.txt:1"):
        main(args + ["--md5-file", str(md5_file)])


@pytest.mark.parametrize("subsets, message", [("train:2,train:3", "names 'train' twice"),
                                              ("train:2,dev", "wants name:count")])
def test_synth_subsets_are_checked(tmp_path, subsets, message):
    """--subsets train:2,train:3 kept the last count without a word; nothing is made."""
    with pytest.raises(SystemExit) as e:
        main(["synth", str(tmp_path / "sy"), "--subsets", subsets])
    assert message in str(e.value) and not (tmp_path / "sy").exists()
