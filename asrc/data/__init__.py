"""Corpora to Kaldi-style data directories, token lists and text normalisation.

============================ ===============================================================
:mod:`asrc.data.datadir`     write / read / validate / combine data directories
:mod:`asrc.data.audio`       sample rate and length from FLAC / WAV / SPHERE headers
:mod:`asrc.data.text`        LibriSpeech-style transcript normalisation
:mod:`asrc.data.tokens`      fairseq-compatible letters, sentencepiece BPE, ``tokens.txt``
:mod:`asrc.data.download`    resumable, verified downloads; all-or-nothing extraction
:mod:`asrc.data.librispeech` LibriSpeech download and preparation (also synthetic corpora)
:mod:`asrc.data.an4`         CMU AN4 download and preparation
:mod:`asrc.data.synth`       a synthetic LibriSpeech-layout corpus made with TTS
============================ ===============================================================

The command line is ``asrc-data`` (:mod:`asrc.bin.data`). Nothing here imports torch at
import time except :mod:`asrc.data.synth`'s synthesis functions when called.
"""
