#!/usr/bin/env bash
# Source this file to use asrc's venv (as ESPnet's tools/activate_python.sh).
_asrc_tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -x "$_asrc_tools/venv/bin/python" ]; then
    echo "asrc: $_asrc_tools/venv is missing; run tools/install.sh (or 'make install')" >&2
    return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_asrc_tools/venv/bin/activate"
export PATH="/usr/lib/sctk/bin:$PATH"
unset _asrc_tools
