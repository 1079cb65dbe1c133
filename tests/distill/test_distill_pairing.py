import pytest

from asrc.data.tokens import letter_tokens
from asrc.distill.pairing import check_same_frames, check_same_tokens, default_layer_map, resolve_layer_map
from asrc.errors import ConfigError
from asrc.models import Wav2Vec2Config

TINY = dict(conv_layers=[[16, 10, 5], [16, 4, 4], [16, 2, 2]], embed_dim=32, ffn_dim=64, num_heads=2,
            num_layers=6, pos_conv_kernel=8, pos_conv_groups=4)


def test_tokens_index_zero_is_the_blank_whatever_its_name():
    asrc_tokens = letter_tokens()
    hf_tokens = ["<pad>"] + asrc_tokens[1:]
    check_same_tokens(hf_tokens, asrc_tokens)


def test_token_mismatch_names_indices():
    a = letter_tokens()
    b = list(a)
    b[5], b[6] = b[6], b[5]
    with pytest.raises(ConfigError, match=r"at 2 indices \(5: 'E' vs 'T'; 6: 'T' vs 'E'\)"):
        check_same_tokens(a, b, "teacher", "student")
    with pytest.raises(ConfigError, match="teacher has 32 tokens, student has 33"):
        check_same_tokens(a, a + ["<sos/eos>"], "teacher", "student")


def test_frames_must_match_but_groups_may_differ():
    teacher = Wav2Vec2Config(**TINY)
    check_same_frames(teacher, teacher.replace(conv_groups=2, num_layers=2))
    check_same_frames(teacher, teacher.replace(conv_layers=[[8, 10, 5], [8, 4, 4], [8, 2, 2]]))
    with pytest.raises(ConfigError, match="different frame counts"):
        check_same_frames(teacher, teacher.replace(conv_layers=[[16, 10, 5], [16, 4, 4], [16, 3, 3]]))


def test_default_layer_map_pairs_every_k_spans_with_their_last_layer():
    # every_k initialises 4 of 12 from 1, 4, 7, 10: the spans 1-3, 4-6, 7-9, 10-12.
    assert default_layer_map(4, 12) == {1: 3, 2: 6, 3: 9, 4: 12}
    assert default_layer_map(5, 12) == {1: 3, 2: 5, 3: 8, 4: 10, 5: 12}
    assert default_layer_map(4, 6) == {1: 2, 2: 3, 3: 5, 4: 6}


def test_resolve_layer_map():
    teacher = Wav2Vec2Config(**TINY)
    student = teacher.replace(num_layers=2)
    assert resolve_layer_map(None, student, teacher) == {1: 3, 2: 6}
    # ALBERT-style reuse: 2 layers applied twice = 4 hidden states after the input.
    assert resolve_layer_map({}, student.replace(layer_reuse=2), teacher) == {1: 2, 2: 3, 3: 5, 4: 6}
    assert resolve_layer_map({"0": 0, 2: "6"}, student, teacher) == {0: 0, 2: 6}
    with pytest.raises(ConfigError, match=r"student state 3 not in \[0, 2\]; teacher state 7 not in \[0, 6\]"):
        resolve_layer_map({3: 7}, student, teacher)
    with pytest.raises(ConfigError, match="integer"):
        resolve_layer_map({"a": 1}, student, teacher)
