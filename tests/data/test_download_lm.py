"""asrc-data download-lm: an ARPA LM from a URL (resumable, MD5-checked) or a local file,
gzip decompressed, kept once fetched, one-line errors for what is not an ARPA file."""

import gzip
import hashlib

import pytest

from asrc.bin import data as data_cli
from asrc.data.download import fetch_lm
from asrc.errors import AsrcError

ARPA = b"""\\data\\
ngram 1=4
ngram 2=2

\\1-grams:
-1.0\t<unk>\t0
-99\t<s>\t-0.3
-1.0\t</s>\t0
-0.5\tHELLO\t-0.2

\\2-grams:
-0.1\t<s> HELLO
-0.2\tHELLO </s>

\\end\\
"""


def test_local_arpa_and_gz(tmp_path):
    (tmp_path / "lm.arpa").write_bytes(ARPA)
    (tmp_path / "lm.arpa.gz").write_bytes(gzip.compress(ARPA))
    assert fetch_lm(tmp_path / "lm.arpa", tmp_path / "out" / "a.arpa").read_bytes() == ARPA
    assert fetch_lm(tmp_path / "lm.arpa.gz", tmp_path / "out" / "b.arpa").read_bytes() == ARPA
    # the ARPA given as its own destination: left as it is
    assert fetch_lm(tmp_path / "lm.arpa", tmp_path / "lm.arpa").read_bytes() == ARPA


def test_url_with_md5_and_kept_once_fetched(tmp_path, server):
    body = gzip.compress(ARPA)
    server.files["/lm/3-gram.arpa.gz"] = body
    url = server.url + "/lm/3-gram.arpa.gz"
    out = fetch_lm(url, tmp_path / "lm" / "lm.arpa", md5=hashlib.md5(body).hexdigest(), progress=False)
    assert out.read_bytes() == ARPA and (tmp_path / "lm" / "3-gram.arpa.gz").is_file()
    n = len(server.requests)
    fetch_lm(url, tmp_path / "lm" / "lm.arpa", progress=False)
    assert len(server.requests) == n  # not fetched again
    with pytest.raises(AsrcError, match="MD5"):
        fetch_lm(url, tmp_path / "other" / "lm.arpa", md5="0" * 32, progress=False)


@pytest.mark.parametrize("content,message", [
    (b"hello world\n", "not an ARPA file"),
    (gzip.compress(ARPA)[:20], "cannot read it|damaged"),
])
def test_not_an_arpa_file(tmp_path, content, message):
    src = tmp_path / ("bad.arpa.gz" if content[:2] == b"\x1f\x8b" else "bad.arpa")
    src.write_bytes(content)
    with pytest.raises(AsrcError, match=message):
        fetch_lm(src, tmp_path / "out.arpa")
    assert not (tmp_path / "out.arpa").exists()


def test_cli_one_line_errors(tmp_path, capsys):
    assert data_cli.main(["download-lm", str(tmp_path / "missing.arpa"), str(tmp_path / "lm.arpa")]) != 0
    err = capsys.readouterr().err
    assert "missing.arpa does not exist" in err and "Traceback" not in err
    (tmp_path / "ok.arpa").write_bytes(ARPA)
    assert data_cli.main(["download-lm", str(tmp_path / "ok.arpa"), str(tmp_path / "lm.arpa"), "--no-progress"]) == 0
    assert (tmp_path / "lm.arpa").read_bytes() == ARPA
