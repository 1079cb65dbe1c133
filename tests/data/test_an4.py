import io
import tarfile

import pytest

from asrc.core.tables import read_table
from asrc.data.an4 import download_an4, prepare_an4, split_speakers
from asrc.data.datadir import validate_data_dir
from asrc.data.tokens import letter_tokens


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
