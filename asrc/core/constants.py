"""Constants that several layers must agree on."""

#: Hz. Every model takes mono float32 audio at this rate.
SAMPLE_RATE = 16000

#: Seconds a Kaldi segment may end past its recording (Kaldi's extract-segments
#: --max-overshoot): asrc-decode cuts it at the end, asrc-data validate accepts it; more is an error.
MAX_SEGMENT_OVERSHOOT = 0.5

#: The CTC blank: always index 0 of a token list, named as ESPnet names it.
BLANK = "<blank>"
BLANK_ID = 0
UNK = "<unk>"
SOS_EOS = "<sos/eos>"
#: The word boundary of letter token lists (``H E L L O | W O R L D``).
WORD_BOUNDARY = "|"
