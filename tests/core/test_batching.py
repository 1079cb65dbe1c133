from asrc.core.batching import pack_padded


def test_pack_padded_keeps_padded_size_within_the_limit():
    sizes = {"a": 5, "b": 4, "c": 4, "d": 1}
    assert pack_padded("abcd", sizes.__getitem__, 9) == [["a"], ["b", "c"], ["d"]]
    # Ascending order: the newest item is the largest of its batch.
    assert pack_padded([1, 1, 2, 3, 9], int, 6) == [[1, 1, 2], [3], [9]]
    # An item over the limit is a batch on its own; nothing is dropped.
    assert pack_padded([20, 1], int, 10) == [[20], [1]]
    assert pack_padded([], int, 10) == []
