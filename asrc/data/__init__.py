"""Corpora to Kaldi-style data directories, token lists and text normalisation.

============================ ===============================================================
:mod:`asrc.data.datadir`     write / validate / combine data directories
:mod:`asrc.data.text`        LibriSpeech-style transcript normalisation
:mod:`asrc.data.tokens`      fairseq-compatible letters, sentencepiece BPE
:mod:`asrc.data.download`    resumable, verified downloads; all-or-nothing extraction
:mod:`asrc.data.librispeech` LibriSpeech download and preparation (also synthetic corpora)
:mod:`asrc.data.an4`         CMU AN4 download and preparation
:mod:`asrc.data.synth`       a synthetic LibriSpeech-layout corpus made with TTS
============================ ===============================================================

Reading tables, data directories, token lists and audio is the ground floor's
(:mod:`asrc.core`). The command line is ``asrc-data`` (:mod:`asrc.bin.data`). Nothing here imports torch at
import time except :mod:`asrc.data.synth`'s synthesis functions when called.
"""
