import os
import stat

import pytest

from asrc.core.files import atomic_write


def test_atomic_write_replaces_whole_file_with_normal_mode(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    with atomic_write(path) as f:
        f.write("one\n")
    assert path.read_text() == "one\n"
    mask = os.umask(0o022)
    try:
        with atomic_write(path) as f:
            f.write("two\n")
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "two\n"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]
