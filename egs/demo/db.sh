# Corpus locations for egs/demo (override from the environment: AN4=/data/an4 ./run.sh).
# The demo needs no corpus: it synthesises its speech. When AN4 (the teacher's training corpus,
# CMU an4_sphere layout) is here, the demo also distils on its training set and tests on its
# test set; egs/an4/run.sh downloads it if you want it.
AN4=${AN4:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/shared/data/an4}
