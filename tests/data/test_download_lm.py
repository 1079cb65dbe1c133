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


# A download that fails its check is not kept (audit B, item 10): a truncated .gz or an HTML page
# served with status 200 is deleted and fetched once more; if that copy is bad too, it is deleted
# as well and the error names the URL and the local file, so that a rerun starts afresh.

HTML = b"<html><body>Mirror maintenance</body></html>\n"


@pytest.mark.parametrize("bad", [gzip.compress(ARPA)[: len(gzip.compress(ARPA)) // 2], HTML],
                         ids=["truncated-gz", "html-page"])
def test_bad_download_is_fetched_again(tmp_path, server, bad):
    server.versions["/lm.arpa.gz"] = [bad, gzip.compress(ARPA)]
    out = fetch_lm(server.url + "/lm.arpa.gz", tmp_path / "dl" / "lm.arpa", progress=False)
    assert out.read_bytes() == ARPA
    assert sum(1 for p, _ in server.requests if p == "/lm.arpa.gz") == 2


def test_bad_download_twice_is_deleted_and_a_rerun_recovers(tmp_path, server, capsys):
    body = gzip.compress(ARPA)
    server.files["/trunc.arpa.gz"] = body[: len(body) // 2]  # a broken mirror, Content-Length and all
    url = server.url + "/trunc.arpa.gz"
    local = tmp_path / "dl" / "trunc.arpa.gz"
    argv = ["download-lm", url, str(tmp_path / "dl" / "trunc.arpa"), "--no-progress"]
    assert data_cli.main(argv) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert url in err and str(local) in err and "deleted" in err
    assert not local.exists() and not (tmp_path / "dl" / "trunc.arpa").exists()
    assert not (tmp_path / "dl" / "trunc.arpa.gz.part").exists()
    server.files["/trunc.arpa.gz"] = body  # the mirror is fixed: the rerun needs no manual cleanup
    assert data_cli.main(argv) == 0
    assert (tmp_path / "dl" / "trunc.arpa").read_bytes() == ARPA


def test_bad_file_left_by_an_earlier_run_is_not_trusted(tmp_path, server):
    """A complete but unreadable download on disk (from a version that kept it) is fetched again."""
    body = gzip.compress(ARPA)
    server.files["/lm.arpa.gz"] = body
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "lm.arpa.gz").write_bytes(body[:20])
    assert fetch_lm(server.url + "/lm.arpa.gz", tmp_path / "dl" / "lm.arpa", progress=False).read_bytes() == ARPA
    assert (tmp_path / "dl" / "lm.arpa.gz").read_bytes() == body


def test_local_bad_file_is_not_deleted(tmp_path):
    """A local source is the user's file: it is named, never deleted."""
    src = tmp_path / "bad.arpa.gz"
    src.write_bytes(gzip.compress(ARPA)[:20])
    with pytest.raises(AsrcError, match=f"LM {src}: cannot read it"):
        fetch_lm(src, tmp_path / "out.arpa")
    assert src.is_file() and not (tmp_path / "out.arpa.part").exists()
