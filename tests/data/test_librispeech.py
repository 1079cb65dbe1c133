import hashlib
import io
import tarfile

import pytest

from asrc.data.datadir import validate_data_dir
from asrc.data.download import DownloadError, download, fetch_and_extract
from asrc.data.librispeech import download_librispeech, prepare_librispeech
from asrc.data.tokens import letter_tokens
from asrc.errors import AsrcError

def _tarball(tree_root, subset):
    """``LibriSpeech/<subset>/...`` + ``LibriSpeech/README.TXT`` as .tar.gz bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tree_root / subset, arcname=f"LibriSpeech/{subset}")
        readme = b"LibriSpeech test archive\n"
        info = tarfile.TarInfo("LibriSpeech/README.TXT")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# download


def test_download_resumes_after_dropped_connection(tmp_path, server, tiny_corpus):
    body = _tarball(tiny_corpus, "dev-clean")
    md5 = hashlib.md5(body).hexdigest()
    server.files["/ok/dev-clean.tar.gz"] = body
    server.drop_after["/ok/dev-clean.tar.gz"] = 1000
    dest = tmp_path / "downloads"
    root = download_librispeech(
        ["dev-clean"], dest, base_url=server.url + "/missing", mirrors=[server.url + "/ok"],
        md5s={"dev-clean": md5}, sizes={"dev-clean": len(body)}, backoff=0, progress=False,
    )
    assert root == dest / "LibriSpeech"
    # 404 on the main URL, then the mirror: dropped after 1000 bytes, resumed from there.
    assert server.requests == [
        ("/missing/dev-clean.tar.gz", None),
        ("/ok/dev-clean.tar.gz", None),
        ("/ok/dev-clean.tar.gz", "bytes=1000-"),
    ]
    assert (dest / "dev-clean.tar.gz").read_bytes() == body
    assert (root / "dev-clean" / ".done").is_file() and (root / "README.TXT").is_file()
    assert sorted(p.name for p in (root / "dev-clean" / "19" / "198").iterdir()) == [
        "19-198-0000.flac", "19-198-0001.flac", "19-198.trans.txt"]
    assert not list(dest.glob(".extract-*")) and not list(dest.glob("*.part"))
    # Idempotent: nothing fetched again.
    download_librispeech(["dev-clean"], dest, base_url=server.url + "/ok", mirrors=[], md5s={"dev-clean": md5},
                         progress=False)
    assert len(server.requests) == 3
    written = prepare_librispeech(root, tmp_path / "data", nj=1, progress=False)
    assert sum(1 for _ in open(written["dev_clean"] / "wav.scp")) == 5


def test_download_wrong_md5_fails_clearly(tmp_path, server, tiny_corpus):
    body = _tarball(tiny_corpus, "dev-clean")
    server.files["/dev-clean.tar.gz"] = body
    dest = tmp_path / "downloads"
    with pytest.raises(DownloadError) as err:
        download_librispeech(["dev-clean"], dest, base_url=server.url, mirrors=[], md5s={"dev-clean": "0" * 32},
                             backoff=0, progress=False)
    message = str(err.value)
    assert "dev-clean.tar.gz: wrong content twice" in message
    assert f"MD5 {hashlib.md5(body).hexdigest()}, expected {'0' * 32}" in message
    assert [r for r in server.requests] == [("/dev-clean.tar.gz", None)] * 2  # re-fetched once from scratch
    assert not (dest / "LibriSpeech").exists() and not list(dest.glob("dev-clean.tar.gz*"))


def test_truncated_archive_is_refetched_and_never_half_extracted(tmp_path, server, tiny_corpus):
    body = _tarball(tiny_corpus, "dev-clean")
    server.versions["/an4.tar.gz"] = [body[: len(body) // 2], body]  # first a truncated file
    dest = tmp_path / "d"
    fetch_and_extract(server.url + "/an4.tar.gz", dest / "an4.tar.gz", dest, dest / "LibriSpeech" / ".done",
                      backoff=0, progress=False)
    assert len(server.requests) == 2
    assert (dest / "LibriSpeech" / ".done").is_file()
    assert (dest / "LibriSpeech" / "dev-clean" / "1034" / "121119" / "1034-121119-0000.flac").is_file()
    # Always truncated: reported, no stamp, no partial tree left behind.
    server.versions["/bad.tar.gz"] = [body[:-200]]
    with pytest.raises(AsrcError, match="bad.tar.gz: cannot be extracted, truncated or corrupt"):
        fetch_and_extract(server.url + "/bad.tar.gz", tmp_path / "e" / "bad.tar.gz", tmp_path / "e",
                          tmp_path / "e" / ".done", backoff=0, progress=False)
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["bad.tar.gz"]
    # An HTML page served in place of the archive (status 200): the URL and what came are named.
    server.files["/page.tar.gz"] = b"<!DOCTYPE html>\n<html><body>Sign in</body></html>\n"
    with pytest.raises(AsrcError, match=r"downloaded twice from http://127\.0\.0\.1:\d+/page\.tar\.gz; it is an HTML page"):
        fetch_and_extract(server.url + "/page.tar.gz", tmp_path / "f" / "page.tar.gz", tmp_path / "f",
                          tmp_path / "f" / ".done", backoff=0, progress=False)


def test_download_from_local_source(tmp_path, tiny_corpus):
    body = _tarball(tiny_corpus, "dev-clean")
    archives = tmp_path / "archives"
    archives.mkdir()
    (archives / "dev-clean.tar.gz").write_bytes(body)
    md5 = hashlib.md5(body).hexdigest()
    root = download_librispeech(["dev-clean"], tmp_path / "d1", source=archives, md5s={"dev-clean": md5},
                                progress=False)
    assert (root / "dev-clean" / ".done").is_file()
    with pytest.raises(AsrcError, match="dev-clean.tar.gz: MD5 differs"):
        download_librispeech(["dev-clean"], tmp_path / "d2", source=archives, md5s={"dev-clean": "1" * 32},
                             progress=False)
    # An extracted tree is linked, not copied.
    root = download_librispeech(["dev-clean"], tmp_path / "d3", source=tiny_corpus.parent, progress=False)
    assert (root / "dev-clean").is_symlink() and (root / "dev-clean").resolve() == (tiny_corpus / "dev-clean")
    with pytest.raises(FileNotFoundError, match="test-other: not in source"):
        download_librispeech(["test-other"], tmp_path / "d4", source=tiny_corpus.parent, progress=False)


# --------------------------------------------------------------------------------------------
# preparation


def test_prepare_output_line_by_line(tmp_path, tiny_corpus):
    written = prepare_librispeech(tiny_corpus, tmp_path / "data", nj=1, progress=False)
    assert list(written) == ["dev_clean"]
    d = written["dev_clean"]
    base = tiny_corpus / "dev-clean"
    ids = ["103-1240-0000", "103-1241-0005", "1034-121119-0000", "19-198-0000", "19-198-0001"]
    assert (d / "wav.scp").read_text().splitlines() == [
        f"{u} {base}/{u.split('-')[0]}/{u.split('-')[1]}/{u}.flac" for u in ids
    ]
    assert (d / "text").read_text().splitlines() == [
        "103-1240-0000 ONE TWO THREE", "103-1241-0005 GOOD MORNING", "1034-121119-0000 A",
        "19-198-0000 HELLO WORLD", "19-198-0001 IT'S A TEST",
    ]
    assert (d / "utt2spk").read_text().splitlines() == [f"{u} {u.split('-')[0]}" for u in ids]
    assert (d / "spk2utt").read_text().splitlines() == [
        "103 103-1240-0000 103-1241-0005", "1034 1034-121119-0000", "19 19-198-0000 19-198-0001"]
    assert (d / "utt2num_samples").read_text().splitlines() == [
        "103-1240-0000 800", "103-1241-0005 3200", "1034-121119-0000 1200", "19-198-0000 1600", "19-198-0001 2400"]
    assert (d / "utt2dur").read_text().splitlines() == [
        "103-1240-0000 0.0500", "103-1241-0005 0.2000", "1034-121119-0000 0.0750", "19-198-0000 0.1000",
        "19-198-0001 0.1500"]
    assert (d / "skipped.txt").read_text() == ""
    assert validate_data_dir(d, token_list=letter_tokens()) == []
    # Parallel preparation writes the same bytes.
    parallel = prepare_librispeech(tiny_corpus, tmp_path / "data2", nj=2, progress=False)["dev_clean"]
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "utt2num_samples"):
        assert (parallel / name).read_bytes() == (d / name).read_bytes()


def test_prepare_reports_every_skipped_utterance(tmp_path, tiny_corpus, write_audio):
    chap = tiny_corpus / "dev-clean" / "19" / "198"
    (chap / "19-198-0001.flac").write_bytes(b"not a flac file")  # unreadable
    write_audio(chap / "19-198-0002.flac", 800)  # audio without transcript line
    with open(chap / "19-198.trans.txt", "a") as f:
        f.write("19-198-0003 NO AUDIO HERE\n19-198-0004 ...\n")
    write_audio(chap / "19-198-0004.flac", 800)  # transcript normalises to nothing
    write_audio(chap / "19-198-0005.flac", 400, sample_rate=8000)
    with open(chap / "19-198.trans.txt", "a") as f:
        f.write("19-198-0005 WRONG RATE\n")
    other = tiny_corpus / "dev-clean" / "103" / "1241"
    (other / "103-1241.trans.txt").write_text("103-1241-0005 good morning, sir!\n")  # gets normalised
    no_trans = tiny_corpus / "dev-clean" / "103" / "1240" / "103-1240.trans.txt"
    no_trans.unlink()
    d = prepare_librispeech(tiny_corpus, tmp_path / "data", nj=2, progress=False)["dev_clean"]
    assert (d / "text").read_text().splitlines() == [
        "103-1241-0005 GOOD MORNING SIR", "1034-121119-0000 A", "19-198-0000 HELLO WORLD"]
    skipped = [line.split("\t") for line in (d / "skipped.txt").read_text().splitlines()]
    assert [s[0] for s in skipped] == [
        "103-1240-0000", "19-198-0001", "19-198-0002", "19-198-0003", "19-198-0004", "19-198-0005"]
    reasons = dict(skipped)
    assert reasons["103-1240-0000"] == f"no transcript file {no_trans}"
    assert reasons["19-198-0001"].startswith("unreadable audio:") and "19-198-0001.flac" in reasons["19-198-0001"]
    assert reasons["19-198-0002"] == f"no transcript line in {chap}/19-198.trans.txt"
    assert reasons["19-198-0003"] == f"no audio file for {chap}/19-198.trans.txt:3"
    assert reasons["19-198-0004"].startswith("transcript '...' is empty after normalisation")
    assert reasons["19-198-0005"] == f"{chap}/19-198-0005.flac: 8000 Hz, 1 channel(s); expected 16000 Hz mono"
    assert validate_data_dir(d) == []


def test_prepare_combined_sets_and_wav(tmp_path, librispeech_tree):
    root = tmp_path / "LibriSpeech"
    librispeech_tree(root, "dev-clean")
    librispeech_tree(root, "dev-other", tiny={"7": {"70": [(0, 1000, "OTHER ONE")]}}, fmt="WAV")
    written = prepare_librispeech(tmp_path, tmp_path / "data", nj=2, progress=False)  # parent of LibriSpeech
    assert list(written) == ["dev_clean", "dev_other", "dev"]
    assert (written["dev_other"] / "wav.scp").read_text() == f"7-70-0000 {root}/dev-other/7/70/7-70-0000.wav\n"
    dev = (written["dev"] / "text").read_text().splitlines()
    assert dev == sorted((written["dev_clean"] / "text").read_text().splitlines() + ["7-70-0000 OTHER ONE"])
    assert validate_data_dir(written["dev"]) == []
    with pytest.raises(FileNotFoundError, match="subset test-clean not found"):
        prepare_librispeech(root, tmp_path / "x", subsets=["test-clean"], progress=False)


def test_wrong_content_is_fetched_again_from_the_next_mirror(tmp_path, server):
    good = b"archive bytes " * 1000
    server.files["/a/f.tar.gz"] = good[:-5] + b"XXXXX"  # a mirror serving a damaged copy
    server.files["/b/f.tar.gz"] = good
    path = download([server.url + "/a/f.tar.gz", server.url + "/b/f.tar.gz"], tmp_path / "f.tar.gz",
                    md5=hashlib.md5(good).hexdigest(), backoff=0, progress=False)
    assert path.read_bytes() == good
    assert [r[0] for r in server.requests] == ["/a/f.tar.gz", "/b/f.tar.gz"]
    assert (tmp_path / "f.tar.gz.md5").read_text().startswith(hashlib.md5(good).hexdigest())


# --------------------------------------------------------------------------------------------
# audit: nothing vanishes silently, reasons that say what happened


def _skipped(d):
    return [tuple(line.split("\t")) for line in (d / "skipped.txt").read_text().splitlines()]


def test_non_utf8_transcript_line_is_skipped_with_its_reason(tmp_path, tiny_corpus):
    chap = tiny_corpus / "dev-clean" / "19" / "198"
    (chap / "19-198.trans.txt").write_bytes(b"19-198-0000 CAF\xe9 AU LAIT\n19-198-0001 IT'S A TEST\n")
    d = prepare_librispeech(tiny_corpus, tmp_path / "data", nj=1, progress=False)["dev_clean"]
    text = (d / "text").read_text().splitlines()
    assert "19-198-0001 IT'S A TEST" in text and not [t for t in text if t.startswith("19-198-0000")]
    assert _skipped(d) == [("19-198-0000", f"transcript line 1 of {chap}/19-198.trans.txt is not valid UTF-8")]
    assert (d / "text_lost_chars.txt").read_text() == ""


def test_audio_outside_chapter_folders_is_listed(tmp_path, tiny_corpus, write_audio):
    subset = tiny_corpus / "dev-clean"
    spk = subset / "1034"
    for f in (spk / "121119").iterdir():  # a speaker folder without its chapter level
        f.rename(spk / f.name)
    (spk / "121119").rmdir()
    write_audio(subset / "19" / "198" / "more" / "19-198-0007.flac", 800)  # nested in a chapter
    write_audio(subset / "5-50-0000.flac", 800)  # directly in the subset folder
    d = prepare_librispeech(tiny_corpus, tmp_path / "data", nj=2, progress=False)["dev_clean"]
    assert len((d / "text").read_text().splitlines()) == 4
    reasons = dict(_skipped(d))
    assert sorted(reasons) == ["1034-121119-0000", "19-198-0007", "5-50-0000"]
    assert reasons["1034-121119-0000"] == (f"{spk}/1034-121119-0000.flac: audio directly in the speaker folder, "
                                           "not read; expected in a chapter folder 1034/<chapter>/")
    assert reasons["19-198-0007"] == (f"{subset}/19/198/more/19-198-0007.flac: in a subfolder, not read; "
                                      "audio is expected directly in the chapter folder 19/198/")
    assert reasons["5-50-0000"] == (f"{subset}/5-50-0000.flac: audio directly in the subset folder, not read; "
                                    "expected in dev-clean/<speaker>/<chapter>/")


def test_transcript_quirks_have_true_reasons(tmp_path, tiny_corpus, write_audio):
    base = tiny_corpus / "dev-clean"
    bom = base / "103" / "1240" / "103-1240.trans.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())  # UTF-8 BOM: stripped
    (base / "103" / "1241" / "103-1241.trans.txt").write_text("103-1241-0005\tGOOD MORNING\n")  # tab-separated
    chap = base / "19" / "198"
    with open(chap / "19-198.trans.txt", "a") as f:
        f.write("19-198-0000 SOMETHING ELSE\n")  # a second line for one id
    for i in (0, 1):  # X.flac and X.wav: the FLAC is read, whatever the directory order
        write_audio(chap / f"19-198-000{i}.wav", 400)
    d = prepare_librispeech(tiny_corpus, tmp_path / "data", nj=1, progress=False)["dev_clean"]
    assert (d / "text").read_text().splitlines() == [
        "103-1240-0000 ONE TWO THREE", "103-1241-0005 GOOD MORNING", "1034-121119-0000 A",
        "19-198-0000 HELLO WORLD", "19-198-0001 IT'S A TEST"]
    assert [line.split()[1] for line in (d / "wav.scp").read_text().splitlines()][-2:] == [
        f"{chap}/19-198-0000.flac", f"{chap}/19-198-0001.flac"]
    assert _skipped(d) == [
        ("19-198-0000", f"{chap}/19-198-0000.wav: a second audio file for this id, not read; "
                        "19-198-0000.flac is used"),
        ("19-198-0000", f"a second transcript line for this id, {chap}/19-198.trans.txt:3 (the first is line 1), "
                        "not read"),
        ("19-198-0001", f"{chap}/19-198-0001.wav: a second audio file for this id, not read; "
                        "19-198-0001.flac is used"),
    ]


def test_subset_folder_as_corpus_is_refused_up_front(tmp_path, tiny_corpus, capsys):
    from asrc.bin import data as data_cli

    subset = tiny_corpus / "dev-clean"
    with pytest.raises(AsrcError, match=f"{subset} looks like a subset folder .* pass the folder above it, "
                                        f"{tiny_corpus} "):
        prepare_librispeech(subset, tmp_path / "data", nj=1, progress=False)
    assert not (tmp_path / "data").exists()
    assert data_cli.main(["prepare-librispeech", str(subset), str(tmp_path / "data"), "--nj", "1",
                          "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and "--subsets dev-clean" in err
    assert not (tmp_path / "data").exists()


def test_archive_without_the_subset_fails_and_fails_again(tmp_path, server, tiny_corpus):
    body = _tarball(tiny_corpus, "dev-clean")
    (tmp_path / "x.tar.gz").write_bytes(body)
    server.files["/dev-clean-2.tar.gz"] = body
    dest = tmp_path / "dl"
    root = dest / "LibriSpeech"
    for _ in range(2):  # the rerun must not trust a stamp
        with pytest.raises(AsrcError, match=r"x.tar.gz: holds no LibriSpeech/dev-clean-2 folder"):
            download_librispeech(["dev-clean-2"], dest, source=tmp_path / "x.tar.gz", progress=False)
        assert not (root / "dev-clean-2").exists()
    (root / "dev-clean-2").mkdir()
    (root / "dev-clean-2" / ".done").write_text("stale\n")  # left by an older version
    with pytest.raises(AsrcError, match=r"x.tar.gz: holds no LibriSpeech/dev-clean-2 folder"):
        download_librispeech(["dev-clean-2"], dest, source=tmp_path / "x.tar.gz", progress=False)
    assert not (root / "dev-clean-2").exists()
    for _ in range(2):  # fetched from a server
        with pytest.raises(AsrcError, match=r"dev-clean-2.tar.gz: holds no LibriSpeech/dev-clean-2 folder"):
            download_librispeech(["dev-clean-2"], dest, base_url=server.url, mirrors=[], backoff=0, progress=False)
        assert not (root / "dev-clean-2").exists()
