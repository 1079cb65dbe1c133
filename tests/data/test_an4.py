import io
import tarfile

import pytest

from asrc.core.tables import read_table
from asrc.data.an4 import download_an4, prepare_an4, split_speakers
from asrc.data.datadir import validate_data_dir
from asrc.data.tokens import letter_tokens
from asrc.errors import AsrcError


def _count(path):
    with open(path) as f:
        return sum(1 for _ in f)


def test_prepare_an4(an4_root, tmp_path):
    written = prepare_an4(an4_root, tmp_path / "data")
    assert list(written) == ["train", "dev", "test"]
    n = {name: _count(d / "wav.scp") for name, d in written.items()}
    assert n["test"] == 130 and n["train"] + n["dev"] == 948
    assert 0.05 * 948 < n["dev"] < 0.2 * 948
    speakers = {name: set(read_table(d / "utt2spk").values()) for name, d in written.items()}
    assert len(speakers["train"] | speakers["dev"]) == 74 and len(speakers["test"]) == 10
    assert not speakers["train"] & speakers["dev"] and not speakers["test"] & (speakers["train"] | speakers["dev"])
    assert {s[0] for s in speakers["dev"]} == {"f", "m"}  # both genders held out
    for d in written.values():
        assert (d / "skipped.txt").read_text() == ""
        assert validate_data_dir(d, token_list=letter_tokens()) == []
    test = written["test"]
    assert read_table(test / "text")["fcaw-an406-b"] == "RUBOUT G M E F THREE NINE"
    assert read_table(test / "wav.scp")["fcaw-an406-b"].endswith("wav/an4test_clstk/fcaw/an406-fcaw-b.sph")
    assert read_table(test / "utt2num_samples")["fcaw-an406-b"] == "64000"
    train_text = read_table(written["train"] / "text")
    assert all(not t.startswith("<s>") and "(" not in t for t in train_text.values())
    # Deterministic: the same split and bytes again.
    again = prepare_an4(an4_root, tmp_path / "again")
    for name, d in written.items():
        assert (again[name] / "wav.scp").read_bytes() == (d / "wav.scp").read_bytes()


def test_split_speakers():
    speakers = [f"f{i:02d}" for i in range(10)] + [f"m{i:02d}" for i in range(20)] + ["xlone"]
    assert split_speakers(speakers, 0.1) == ["f05", "m05", "m15"]
    with pytest.raises(ValueError):
        split_speakers(speakers, 1.5)


def _fake_an4_tarball(an4_root):
    """A four-utterance an4_sphere.tar.gz built from the real corpus' files."""
    train = ["an4_clstk/fash/an251-fash-b", "an4_clstk/fbbh/an86-fbbh-b", "an4_clstk/fclc/an146-fclc-b"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in train + ["an4test_clstk/fcaw/an406-fcaw-b"]:
            tar.add(f"{an4_root}/wav/{rel}.sph", arcname=f"an4/wav/{rel}.sph")
        for name, content in {
            "an4_train.fileids": "".join(f"{rel}\n" for rel in train),
            "an4_train.transcription": "<s> YES </s> (an251-fash-b)\n<s> C Z D Z W EIGHT </s> (an86-fbbh-b)\n"
            "<s> N L N S ONE SEVENTY FIVE </s> (an146-fclc-b)\n",
            "an4_test.fileids": "an4test_clstk/fcaw/an406-fcaw-b\n",
            "an4_test.transcription": "RUBOUT G M E F THREE NINE (an406-fcaw-b)\n",
        }.items():
            data = content.encode()
            info = tarfile.TarInfo(f"an4/etc/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_download_an4(an4_root, tmp_path, server):
    server.files["/an4_sphere.tar.gz"] = _fake_an4_tarball(an4_root)
    server.drop_after["/an4_sphere.tar.gz"] = 50000
    root = download_an4(tmp_path / "dl", url=server.url + "/an4_sphere.tar.gz", mirrors=(), backoff=0, progress=False)
    assert root == tmp_path / "dl" / "an4" and (root / ".done").is_file()
    assert [r[1] for r in server.requests] == [None, "bytes=50000-"]
    written = prepare_an4(root, tmp_path / "data")
    assert (written["train"] / "text").read_text() == "fash-an251-b YES\nfclc-an146-b N L N S ONE SEVENTY FIVE\n"
    assert (written["dev"] / "text").read_text() == "fbbh-an86-b C Z D Z W EIGHT\n"
    assert (written["test"] / "text").read_text() == "fcaw-an406-b RUBOUT G M E F THREE NINE\n"
    assert download_an4(tmp_path / "dl", url=server.url + "/an4_sphere.tar.gz", progress=False) == root
    assert len(server.requests) == 2
    # A local corpus is linked, not copied.
    linked = download_an4(tmp_path / "local", source=an4_root, progress=False)
    assert linked.is_symlink() and (linked / "etc" / "an4_test.transcription").is_file()
    with pytest.raises(FileNotFoundError, match="neither an4/"):
        download_an4(tmp_path / "none", source=tmp_path / "data", progress=False)


# --------------------------------------------------------------------------------------------
# faults in a tiny synthetic AN4 tree


_TINY_TRAIN = {"an1-fash-b": "YES", "an2-fash-b": "NO", "an3-fash-b": "RUBOUT", "an4-fbbh-b": "GO"}


def _tiny_an4(root, write_audio):
    """An AN4 tree: train speakers fash (train, 3 utterances) and fbbh (dev), test mcen.
    ``.sph`` files are real NIST SPHERE, 16 kHz mono."""
    train = {f"an4_clstk/{base.split('-')[1]}/{base}": text for base, text in _TINY_TRAIN.items()}
    test = {"an4test_clstk/mcen/an5-mcen-b": "ENTER"}
    for rel in [*train, *test]:
        write_audio(root / "wav" / f"{rel}.sph", 1600, fmt="NIST")
    (root / "etc").mkdir()
    for part, utts, tags in (("train", train, ("<s> ", " </s>")), ("test", test, ("", ""))):
        (root / "etc" / f"an4_{part}.fileids").write_text("".join(f"{rel}\n" for rel in utts))
        (root / "etc" / f"an4_{part}.transcription").write_text(
            "".join(f"{tags[0]}{text}{tags[1]} ({rel.rsplit('/', 1)[1]})\n" for rel, text in utts.items()))
    return root


def test_prepare_an4_tiny(tmp_path, write_audio):
    written = prepare_an4(_tiny_an4(tmp_path / "an4", write_audio), tmp_path / "data")
    assert (written["train"] / "text").read_text() == "fash-an1-b YES\nfash-an2-b NO\nfash-an3-b RUBOUT\n"
    assert (written["dev"] / "text").read_text() == "fbbh-an4-b GO\n"
    assert (written["test"] / "text").read_text() == "mcen-an5-b ENTER\n"
    assert all((d / "skipped.txt").read_text() == "" for d in written.values())


@pytest.mark.parametrize("name", ["an4_train.transcription", "an4_train.fileids"])
def test_prepare_an4_ignores_bom(tmp_path, write_audio, name):
    root = _tiny_an4(tmp_path / "an4", write_audio)
    path = root / "etc" / name
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    written = prepare_an4(root, tmp_path / "data")
    assert (written["train"] / "text").read_text() == "fash-an1-b YES\nfash-an2-b NO\nfash-an3-b RUBOUT\n"
    assert (written["train"] / "skipped.txt").read_text() == ""


def test_prepare_an4_skips_repeated_ids(tmp_path, write_audio):
    root = _tiny_an4(tmp_path / "an4", write_audio)
    trans, fileids = root / "etc" / "an4_train.transcription", root / "etc" / "an4_train.fileids"
    with open(trans, "a") as f:
        f.write("<s> NO </s> (an1-fash-b)\n")
    with open(fileids, "a") as f:
        f.write("an4_clstk/fash/an2-fash-b\n")
    written = prepare_an4(root, tmp_path / "data")
    assert (written["train"] / "text").read_text() == "fash-an3-b RUBOUT\n"
    assert read_table(written["train"] / "skipped.txt") == {
        "fash-an1-b": f"2 lines (1 and 5) of {trans.resolve()} give this utterance",
        "fash-an2-b": f"2 lines (2 and 5) of {fileids.resolve()} give this utterance",
    }


def test_prepare_an4_skips_wrong_rate_and_stereo(tmp_path, write_audio):
    root = _tiny_an4(tmp_path / "an4", write_audio)
    wav = root.resolve() / "wav" / "an4_clstk" / "fash"
    write_audio(wav / "an1-fash-b.sph", 800, sample_rate=8000, fmt="NIST")
    write_audio(wav / "an2-fash-b.sph", 1600, channels=2, fmt="NIST")
    written = prepare_an4(root, tmp_path / "data")
    assert (written["train"] / "text").read_text() == "fash-an3-b RUBOUT\n"
    assert read_table(written["train"] / "skipped.txt") == {
        "fash-an1-b": f"{wav}/an1-fash-b.sph: 8000 Hz, 1 channel(s); expected 16000 Hz mono",
        "fash-an2-b": f"{wav}/an2-fash-b.sph: 16000 Hz, 2 channel(s); expected 16000 Hz mono",
    }
    assert validate_data_dir(written["train"], token_list=letter_tokens()) == []


@pytest.mark.parametrize("name", ["an4_train.transcription", "an4_test.fileids"])
def test_prepare_an4_not_utf8(tmp_path, write_audio, name):
    root = _tiny_an4(tmp_path / "an4", write_audio)
    path = root / "etc" / name
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines) + b"<s> CAF\xe9 </s> (an9-fash-b)\n")
    with pytest.raises(AsrcError, match=rf"{name}:{len(lines) + 1}: not valid UTF-8"):
        prepare_an4(root, tmp_path / "data")


def _tarball(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("member", ["foo/readme", "an4/readme"])
def test_download_an4_wrong_archive_fails_again(tmp_path, member):
    archive = _tarball(tmp_path / "an4_sphere.tar.gz", {member: b"hi\n"})
    dest = tmp_path / "dl"
    (dest / "keep").mkdir(parents=True)
    for _ in range(2):  # the rerun must not trust a stamp of the failed extraction
        with pytest.raises(AsrcError, match="did not produce"):
            download_an4(dest, source=archive, progress=False)
        assert sorted(p.name for p in dest.iterdir()) == ["keep"]  # what it unpacked is gone
    assert archive.is_file()
    # A stamp left by an older version over a tree that is not AN4 is not trusted either.
    (dest / "an4").mkdir()
    (dest / "an4" / ".done").write_text("extracted from an4_sphere.tar.gz\n")
    with pytest.raises(AsrcError, match="did not produce"):
        download_an4(dest, source=archive, progress=False)


def test_download_an4_wrong_archive_from_url(tmp_path, server):
    _tarball(tmp_path / "x.tar.gz", {"foo/readme": b"hi\n"})
    server.files["/an4_sphere.tar.gz"] = (tmp_path / "x.tar.gz").read_bytes()
    for n in (1, 2):
        with pytest.raises(AsrcError, match="did not produce"):
            download_an4(tmp_path / "dl", url=server.url + "/an4_sphere.tar.gz", mirrors=(), backoff=0,
                         progress=False)
        assert list((tmp_path / "dl").iterdir()) == [] and len(server.requests) == n  # fetched afresh
