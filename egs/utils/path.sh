# Puts asrc's venv (tools/install.sh) first on PATH.
# Resolve links: recipes link path.sh to egs/utils/path.sh, and copies of a recipe elsewhere link utils/.
_asrc_root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
if [ -f "$_asrc_root/tools/venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "$_asrc_root/tools/venv/bin/activate"
else
    echo "path.sh: $_asrc_root/tools/venv not found; run tools/install.sh (using $(command -v python3))" >&2
fi
export PYTHONUNBUFFERED=1
# One thread per process unless asked: the CPU runs here share a small machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# glibc returns PyTorch's large conv buffers to the kernel after every step by default; the
# page faults that follow cost ~20 % of a CPU training step here (0.23 s of 1.09 s, measured).
# The price is memory: a process keeps its peak heap. An AN4 training process (25 s batches)
# then holds ~4-5 GB, its data-loader worker as much again (copy-on-write); 3 recipes at once
# (7 such processes) ran a 24 GB machine out of memory. Unset these for many parallel jobs.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-4000000000}
export MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-8000000000}
export MALLOC_TOP_PAD_=${MALLOC_TOP_PAD_:-1000000000}
