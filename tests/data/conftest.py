"""Tiny corpora for the data tests, and a local HTTP server that misbehaves on purpose."""

import http.server
import threading

import numpy as np
import pytest
import soundfile as sf

# speaker -> chapter -> [(utterance number, samples, transcript)]
TINY = {
    "19": {"198": [(0, 1600, "HELLO WORLD"), (1, 2400, "IT'S A TEST")]},
    "103": {"1240": [(0, 800, "ONE TWO THREE")], "1241": [(5, 3200, "GOOD MORNING")]},
    "1034": {"121119": [(0, 1200, "A")]},
}


def _write_audio(path, num_samples, sample_rate=16000, fmt="FLAC", channels=1, seed=0):
    data = np.random.default_rng(seed).normal(0, 1000, (num_samples, channels)).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, sample_rate, format=fmt, subtype="PCM_16")
    return path


def make_librispeech_tree(root, subset="dev-clean", tiny=TINY, fmt="FLAC"):
    """``root/<subset>/<spk>/<chap>/...`` from ``tiny``; returns the subset folder."""
    suffix = ".flac" if fmt == "FLAC" else ".wav"
    for spk, chapters in tiny.items():
        for chap, utts in chapters.items():
            chap_dir = root / subset / spk / chap
            lines = []
            for i, n, text in utts:
                utt = f"{spk}-{chap}-{i:04d}"
                _write_audio(chap_dir / f"{utt}{suffix}", n, fmt=fmt, seed=i)
                lines.append(f"{utt} {text}\n")
            (chap_dir / f"{spk}-{chap}.trans.txt").write_text("".join(lines))
    return root / subset


@pytest.fixture
def write_audio():
    """``write_audio(path, num_samples, sample_rate=16000, fmt="FLAC", channels=1, seed=0)``."""
    return _write_audio


@pytest.fixture
def librispeech_tree():
    """``librispeech_tree(root, subset="dev-clean", tiny=TINY, fmt="FLAC")`` -> subset folder."""
    return make_librispeech_tree


@pytest.fixture
def tiny_corpus(tmp_path):
    root = tmp_path / "LibriSpeech"
    make_librispeech_tree(root, "dev-clean")
    return root


# --------------------------------------------------------------------------------------------
# a local HTTP server with Range support that can misbehave on purpose


class _Server:
    """Serves ``files[path]``; ``versions[path]`` = bodies for the 1st, 2nd... request;
    ``drop_after[path]`` = bytes sent before dropping the connection on the first request."""

    def __init__(self):
        self.files, self.versions, self.drop_after, self.requests = {}, {}, {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path
                server.requests.append((path, self.headers.get("Range")))
                count = sum(1 for p, _ in server.requests if p == path)
                if path in server.versions:
                    bodies = server.versions[path]
                    body = bodies[min(count, len(bodies)) - 1]
                elif path in server.files:
                    body = server.files[path]
                else:
                    self.send_error(404)
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if path in server.drop_after and count == 1:
                    payload = payload[: server.drop_after[path]]
                    self.close_connection = True
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()
