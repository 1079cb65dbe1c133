# Corpus locations for egs/an4 (override from the environment: AN4=/data/an4 ./run.sh).
# AN4 is read from here when it holds wav/ and etc/; otherwise stage 1 downloads it from CMU
# (or its public mirror) into downloads/an4.
AN4=${AN4:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/shared/data/an4}
# English sentences for synthetic speech (LJ Speech 1.1 metadata, public domain); stage 1
LJSPEECH_TEXT=${LJSPEECH_TEXT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/shared/data/text/ljspeech_metadata_excluding_test385.csv}
