from setuptools import find_packages, setup

setup(
    name="asrc",
    version="0.1.0",
    description="Compress wav2vec 2.0 CTC speech recognisers: distillation, grouped/shared convolutions, int8",
    packages=find_packages(include=["asrc", "asrc.*"]),
    python_requires=">=3.11",
    install_requires=[
        "torch",
        "torchaudio",
        "numpy",
        "pyyaml",
        "soundfile",
        "tqdm",
        "Unidecode",  # transliteration of transcripts (asrc.data.text)
        "av",  # FFmpeg's decoders for what libsndfile cannot read (M4A/AAC, WebM...; asrc.core.audio)
        "silero-vad",  # splitting long recordings at pauses (asrc.decode.longform); weights inside the wheel
    ],
    extras_require={
        "train": ["espnet==202511", "tensorboard", "kaldiio", "sentencepiece"],
        "export": ["onnx", "onnxruntime"],
    },
    entry_points={
        "console_scripts": [
            "asrc-convert=asrc.bin.convert:main",
            "asrc-info=asrc.bin.info:main",
            "asrc-data=asrc.bin.data:main",
            "asrc-train=asrc.bin.train:main",
            "asrc-decode=asrc.bin.decode:main",
            "asrc-transcribe=asrc.bin.transcribe:main",
            "asrc-score=asrc.bin.score:main",
            "asrc-results=asrc.bin.results:main",
            "asrc-frontend-init=asrc.bin.frontend_init:main",
            "asrc-quantize=asrc.bin.quantize:main",
            "asrc-export=asrc.bin.export:main",
            "asrc-bench=asrc.bin.bench:main",
        ]
    },
)
