"""The ground floor: what every other part of asrc may use, and which uses nothing above it.

============================ ===============================================================
:mod:`asrc.core.constants`   the sample rate models take, the special tokens (CTC blank, ...)
:mod:`asrc.core.files`       atomic writes (temporary name, then rename)
:mod:`asrc.core.audio_info`  sample rate and length from headers; integrity checks
:mod:`asrc.core.audio`       reading recordings (files, Kaldi ``cmd |`` pipes), with checks
:mod:`asrc.core.batching`    zero-padded waveform batches, length batching
:mod:`asrc.core.tables`      Kaldi tables, a data directory's utterances, token lists
============================ ===============================================================

Only :mod:`asrc.errors` is below it. Nothing here imports torch at import time except
:mod:`asrc.core.audio` and :mod:`asrc.core.batching`.
"""
