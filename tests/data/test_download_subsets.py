"""asrc-data download-librispeech: a misspelt subset is an error at once, listing the known ones,
not ~90 s of every mirror answering 404 (audit B, item 12)."""

import pytest

from asrc.bin import data as data_cli
from asrc.data.librispeech import MIRRORS, SUBSETS, download_librispeech
from asrc.errors import AsrcError


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails the test (the check must come before the first request)."""
    import asrc.data.librispeech as librispeech

    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(librispeech, "fetch_and_extract", refuse)


def test_unknown_subset_is_rejected_before_any_download(tmp_path, no_network):
    with pytest.raises(AsrcError, match=r"unknown LibriSpeech subset 'dev-cleen' \(known: train-clean-100, "):
        download_librispeech(["dev-clean", "dev-cleen"], tmp_path, progress=False)
    with pytest.raises(AsrcError, match=r"subsets 'a', 'b'"):
        download_librispeech(["a", "b"], tmp_path, mirrors=MIRRORS[:1], progress=False)
    assert not (tmp_path / "LibriSpeech").exists()


def test_cli_one_line(tmp_path, capsys, no_network):
    assert data_cli.main(["download-librispeech", str(tmp_path / "dl"), "--subsets", "dev-cleen",
                          "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "'dev-cleen'" in err and all(s in err for s in SUBSETS)


def test_other_names_are_allowed_where_another_server_may_serve_them(tmp_path, server):
    """A --base-url or --mirror of your own may serve other subsets: asked for, as before."""
    with pytest.raises(AsrcError, match="could not download my-subset.tar.gz"):
        download_librispeech(["my-subset"], tmp_path, base_url=server.url, mirrors=(), retries=1, backoff=0,
                             progress=False)
    assert [p for p, _ in server.requests] == ["/my-subset.tar.gz"]
