"""asrc-data download-lm: an ARPA LM from a URL (resumable, MD5-checked) or a local file,
gzip decompressed, kept once fetched, one-line errors for what is not an ARPA file."""

import gzip
import hashlib
import os

import pytest

from asrc.bin import data as data_cli
from asrc.data.download import download, fetch_lm
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


# Audit of download-lm (findings 1-6): the LM made is the one asked for, or a one-line error.

def _arpa(word, n):
    """A small valid ARPA file with ``n`` unigrams ``<word><i>``."""
    grams = "".join(f"-1.0\t{word}{i}\t0\n" for i in range(n))
    return f"\\data\\\nngram 1={n}\n\n\\1-grams:\n{grams}\n\\end\\\n".encode()


def test_another_url_is_fetched_again(tmp_path, server):
    """Finding 1: a .done stamp of another URL (the same file name, no MD5) is not kept."""
    v1, v2 = _arpa("WORD", 50), _arpa("TERM", 5)
    server.files["/v1/lm.arpa"], server.files["/v2/lm.arpa"] = v1, v2
    dest = tmp_path / "lm" / "lm.arpa"
    assert fetch_lm(server.url + "/v2/lm.arpa", dest, progress=False).read_bytes() == v2
    assert fetch_lm(server.url + "/v1/lm.arpa", dest, progress=False).read_bytes() == v1
    assert fetch_lm(server.url + "/v2/lm.arpa", dest, progress=False).read_bytes() == v2
    n = len(server.requests)
    assert fetch_lm(server.url + "/v2/lm.arpa", dest, progress=False).read_bytes() == v2
    assert len(server.requests) == n  # the same URL again: kept


def test_rewritten_local_file_is_fetched_again(tmp_path):
    """Finding 1: a local source is known by its path, size and mtime, not the path alone."""
    src, dest = tmp_path / "src.arpa", tmp_path / "out" / "lm.arpa"
    src.write_bytes(_arpa("WORD", 3))
    assert fetch_lm(src, dest, progress=False).read_bytes() == _arpa("WORD", 3)
    src.write_bytes(_arpa("TERM", 3))  # the same size
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 5 * 10**9))
    assert fetch_lm(src, dest, progress=False).read_bytes() == _arpa("TERM", 3)
    src.write_bytes(_arpa("TERM", 30))
    assert fetch_lm(src, dest, progress=False).read_bytes() == _arpa("TERM", 30)
    src.unlink()  # a source gone since: the LM made from it is kept
    assert fetch_lm(src, dest, progress=False).read_bytes() == _arpa("TERM", 30)


def test_killed_download_then_another_url(tmp_path, server, monkeypatch):
    """Finding 2: the part file of a killed download is not resumed from another URL."""
    import asrc.data.download as dl

    v1, v2 = _arpa("WORD", 400), _arpa("TERM", 5)
    server.files["/v1/lm.arpa"], server.files["/v2/lm.arpa"] = v1, v2
    server.drop_after["/v1/lm.arpa"] = len(v1) // 2
    real = dl._fetch_once

    def killed(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except Exception:
            raise KeyboardInterrupt from None

    monkeypatch.setattr(dl, "_fetch_once", killed)
    dest = tmp_path / "lm" / "lm.arpa"
    with pytest.raises(KeyboardInterrupt):
        fetch_lm(server.url + "/v1/lm.arpa", dest, progress=False)
    monkeypatch.undo()
    parts = list(dest.parent.glob("*.part"))
    assert parts and parts[0].stat().st_size > len(v2)
    assert fetch_lm(server.url + "/v2/lm.arpa", dest, progress=False).read_bytes() == v2
    # the same URL again after a kill still resumes (Range) to the whole file
    server.drop_after["/v3/lm.arpa"] = len(v1) // 2
    server.files["/v3/lm.arpa"] = v1
    monkeypatch.setattr(dl, "_fetch_once", killed)
    dest3 = tmp_path / "lm3" / "lm.arpa"
    with pytest.raises(KeyboardInterrupt):
        fetch_lm(server.url + "/v3/lm.arpa", dest3, progress=False)
    monkeypatch.undo()
    assert fetch_lm(server.url + "/v3/lm.arpa", dest3, progress=False).read_bytes() == v1
    assert server.requests[-1] == ("/v3/lm.arpa", f"bytes={len(v1) // 2}-")


def test_416_means_complete_only_when_the_size_matches(tmp_path, server):
    """Finding 2: HTTP 416 on a part file longer than the file is not 'complete'."""
    body = b"0123456789" * 10
    server.files["/f.bin"] = body
    dest = tmp_path / "f.bin"
    dest.with_name("f.bin.part").write_bytes(b"x" * 1000)
    assert download(server.url + "/f.bin", dest, retries=1, progress=False).read_bytes() == body
    assert server.requests[-2:] == [("/f.bin", "bytes=1000-"), ("/f.bin", None)]
    dest.unlink()
    dest.with_name("f.bin.part").write_bytes(body)  # a whole part file: 416, kept, nothing sent again
    assert download(server.url + "/f.bin", dest, md5=hashlib.md5(body).hexdigest(), retries=1,
                    progress=False).read_bytes() == body
    assert server.requests[-1] == ("/f.bin", f"bytes={len(body)}-")


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_truncated_local_arpa_is_rejected(tmp_path, gz, capsys):
    """Finding 3: an ARPA file must end with its \\end\\ line (also once decompressed)."""
    cut = ARPA[: len(ARPA) // 2]
    src = tmp_path / ("cut.arpa.gz" if gz else "cut.arpa")
    src.write_bytes(gzip.compress(cut) if gz else cut)
    dest = tmp_path / "out" / "lm.arpa"
    assert data_cli.main(["download-lm", str(src), str(dest), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(src) in err and "truncated: no \\end\\ line" in err
    assert not dest.exists() and not dest.with_name("lm.arpa.done").exists()
    assert not dest.with_name("lm.arpa.part").exists()
    # trailing whitespace after \end\ is fine, and so is the ARPA given as its own destination
    (tmp_path / "ws.arpa").write_bytes(ARPA + b"\n \n")
    assert fetch_lm(tmp_path / "ws.arpa", tmp_path / "ws.arpa").read_bytes() == ARPA + b"\n \n"
    (tmp_path / "cut2.arpa").write_bytes(cut)
    with pytest.raises(AsrcError, match="truncated"):
        fetch_lm(tmp_path / "cut2.arpa", tmp_path / "cut2.arpa")
    assert not (tmp_path / "cut2.arpa.done").exists()


def test_truncated_download_is_fetched_again_then_rejected(tmp_path, server):
    """Finding 3: a plain ARPA cut short by the server is downloaded again, then an error."""
    cut = ARPA[: len(ARPA) // 2]
    server.versions["/a/lm.arpa"] = [cut, ARPA]
    assert fetch_lm(server.url + "/a/lm.arpa", tmp_path / "a" / "lm.arpa", progress=False).read_bytes() == ARPA
    server.files["/b/lm.arpa"] = cut
    dest = tmp_path / "b" / "lm.arpa"
    with pytest.raises(AsrcError, match=r"downloaded file .*truncated: no \\end\\ line"):
        fetch_lm(server.url + "/b/lm.arpa", dest, progress=False)
    assert not dest.exists() and not dest.with_name("lm.arpa.done").exists()


def test_dest_named_like_the_downloaded_gz(tmp_path, server):
    """Finding 4: dest lm.arpa.gz from URL .../lm.arpa.gz is the decompressed ARPA."""
    server.files["/lm.arpa.gz"] = gzip.compress(ARPA)
    dest = tmp_path / "f" / "lm.arpa.gz"
    assert fetch_lm(server.url + "/lm.arpa.gz", dest, progress=False).read_bytes() == ARPA
    assert fetch_lm(server.url + "/lm.arpa.gz", dest, progress=False).read_bytes() == ARPA


def test_url_query_string_and_gzip_told_by_content(tmp_path, server):
    """Finding 5: the name comes from the URL's path; gzip is known by its magic bytes."""
    server.files["/lm.arpa.gz?download=true"] = gzip.compress(ARPA)
    server.files["/get?id=3"] = gzip.compress(ARPA)
    assert fetch_lm(server.url + "/lm.arpa.gz?download=true", tmp_path / "e" / "lm.arpa",
                    progress=False).read_bytes() == ARPA
    assert [p for p, _ in server.requests] == ["/lm.arpa.gz?download=true"]
    assert (tmp_path / "e" / "lm.arpa.gz").is_file()
    assert fetch_lm(server.url + "/get?id=3", tmp_path / "g" / "lm.arpa", progress=False).read_bytes() == ARPA
    (tmp_path / "noext").write_bytes(gzip.compress(ARPA))  # a local gzip file without .gz
    assert fetch_lm(tmp_path / "noext", tmp_path / "h" / "lm.arpa").read_bytes() == ARPA


def test_dest_is_a_directory(tmp_path, server, capsys, monkeypatch):
    """Finding 6: an existing folder as DEST is a one-line error up front, nothing written."""
    server.files["/lm.arpa.gz"] = gzip.compress(ARPA)
    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path)
    assert data_cli.main(["download-lm", server.url + "/lm.arpa.gz", "out", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "out is a directory" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and not any((tmp_path / "out").iterdir())
    assert server.requests == []
