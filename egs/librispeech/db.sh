# Corpus and teacher locations for egs/librispeech (override from the environment or flags).
#
# LIBRISPEECH: where the corpus is: the folder holding LibriSpeech/ (and the archives), or the
#   LibriSpeech/ folder itself. Subsets already extracted there (LibriSpeech/<subset>/<speaker>/,
#   e.g. by hand with tar) are used as they are; stage 1 downloads the others from openslr
#   (resumable, md5-checked), reusing <subset>.tar.gz archives already in the folder.
LIBRISPEECH=${LIBRISPEECH:-downloads}
# LIBRISPEECH_URL: where to download from (openslr and its mirrors by default).
LIBRISPEECH_URL=${LIBRISPEECH_URL:-}
# LIBRISPEECH_MD5: an md5sum-style list replacing the published sums (a private mirror).
LIBRISPEECH_MD5=${LIBRISPEECH_MD5:-}
# TEACHER: the fine-tuned wav2vec 2.0 (or HuBERT) CTC teacher: a Hugging Face Wav2Vec2ForCTC /
#   HubertForCTC folder (e.g. wav2vec2-base-960h, hubert-large-ls960-ft) or a fairseq checkpoint
#   (e.g. wav2vec_small_960h.pt, with dict.ltr.txt beside it); TEACHER_FORMAT says which (hf or fairseq).
TEACHER=${TEACHER:-}
TEACHER_FORMAT=${TEACHER_FORMAT:-hf}
