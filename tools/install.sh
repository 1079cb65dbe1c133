#!/usr/bin/env bash
# Create tools/venv with asrc's pinned toolchain and install asrc into it (editable).
#
#   tools/install.sh            # idempotent: seconds when nothing changed
#   PYTHON=/path/to/python3.11 tools/install.sh
#   ASRC_NO_APT=1 tools/install.sh   # do not try Debian packages (sctk, espeak-ng, flite)
#
# The stamp tools/venv/.asrc_stamp holds the hash of the requirement files, setup.py and this
# script; a run with the same hash does nothing.
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$tools_dir")
venv="$tools_dir/venv"
python=${PYTHON:-python3.11}

if ! command -v "$python" >/dev/null 2>&1; then
    echo "tools/install.sh: '$python' not found. asrc needs Python 3.11 (torch==2.9.1 and espnet==202511 are pinned for it)." >&2
    echo "  Install it (e.g. 'apt-get install python3.11-venv' or pyenv) or set PYTHON=/path/to/python3.11." >&2
    exit 1
fi
version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ "$version" != "3.11" ]; then
    echo "tools/install.sh: $python is Python $version; asrc needs Python 3.11." >&2
    exit 1
fi

stamp_value=$(cat "$tools_dir/requirements.txt" "$tools_dir/constraints.txt" "$root/setup.py" "$tools_dir/install.sh" | sha256sum | cut -d' ' -f1)

install_debian() {
    # sclite (sctk) scores recipes; espeak-ng/flite/festival (+ its three English voices) add
    # voices to the synthetic corpus; irstlm trains n-gram LMs; sox runs the pipe entries of
    # Kaldi wav.scp files ("sox a.mp3 -t wav - |"), which asrc reads like files.
    local missing=()
    [ -x /usr/lib/sctk/bin/sclite ] || command -v sclite >/dev/null 2>&1 || missing+=(sctk)
    command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
    command -v flite >/dev/null 2>&1 || missing+=(flite)
    command -v text2wave >/dev/null 2>&1 || missing+=(festival)
    # kal_diphone is only a Recommends of festival (apt configured without them skips it)
    [ -d /usr/share/festival/voices/english/kal_diphone ] || missing+=(festvox-kallpc16k)
    [ -d /usr/share/festival/voices/english/ked_diphone ] || missing+=(festvox-kdlpc16k)
    [ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] || missing+=(festvox-us-slt-hts)
    # IRSTLM's tlm builds the word n-gram LM of egs/an4 stage 20
    [ -x /usr/lib/irstlm/bin/tlm ] || command -v tlm >/dev/null 2>&1 || missing+=(irstlm)
    command -v sox >/dev/null 2>&1 || missing+=(sox)
    [ ${#missing[@]} = 0 ] && return 0
    # Say why a package stays missing: CI (.ci/run) fails without sclite rather than skip its tests.
    local why=
    if [ "${ASRC_NO_APT:-0}" = 1 ]; then
        why="ASRC_NO_APT=1"
    elif ! command -v apt-get >/dev/null 2>&1; then
        why="no apt-get on this system"
    elif [ "$(id -u)" != 0 ]; then
        why="not root (run 'sudo apt-get install ${missing[*]}')"
    else
        echo "tools/install.sh: apt-get install ${missing[*]}"
        if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
            return 0
        fi
        why="apt-get failed"
    fi
    echo "tools/install.sh: warning: ${missing[*]} not installed: $why (scoring falls back to asrc's own" \
         "scorer; the synthetic corpus uses the voices that are there)" >&2
}

install_debian

if [ -f "$venv/.asrc_stamp" ] && [ "$(cat "$venv/.asrc_stamp")" = "$stamp_value" ]; then
    exit 0
fi

echo "tools/install.sh: building $venv (about 7 GB, a few minutes)"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
# pip is not upgraded: pip >= 25 rejects ci_sdr (an espnet dependency) for its direct-URL extra.
# This machine's pip config names local index folders that may be absent: drop pip's warnings about them.
"$venv/bin/python" -m pip install -q -r "$tools_dir/requirements.txt" -c "$tools_dir/constraints.txt" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
"$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" -c "import torch, torchaudio, espnet2, asrc; print('tools/install.sh: torch', torch.__version__, '| asrc from', asrc.__file__)"
echo "$stamp_value" > "$venv/.asrc_stamp"
