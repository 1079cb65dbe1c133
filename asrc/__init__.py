"""asrc: make wav2vec 2.0 CTC speech recognisers small and fast.

The library imports torch but never espnet at import time; the espnet2 adapter lives in
:mod:`asrc.espnet` and is imported only by training entry points.
"""

__version__ = "0.1.0"
