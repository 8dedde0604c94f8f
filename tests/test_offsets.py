"""Character <-> token alignment and sliding windows."""

import numpy as np
import pytest

from gplinker.offsets import Featurizer, Window, WindowIndex, align_span, content_positions, touches_cut


def _content_positions(offsets, special, text=""):
    """content_positions of one window."""
    starts, ends = content_positions([offsets], [special], [len(offsets)], [text])
    return starts[0], ends[0]


def test_content_positions_drop_specials_and_overlapping_metaspace():
    # XLM-R style: <s>, a lone "▁" overlapping the first character, then characters, </s>, padding
    offsets = [(0, 0), (0, 1), (0, 1), (1, 2), (2, 3), (0, 0)]
    special = [1, 0, 0, 0, 0, 1]
    starts, ends = _content_positions(offsets, special)
    assert starts.tolist() == [-1, -1, 0, 1, 2, -1]
    assert ends.tolist() == [-1, -1, 1, 2, 3, -1]


def _window(offsets):
    starts, ends = _content_positions([(0, 0)] + offsets + [(0, 0)], [1] + [0] * len(offsets) + [1])
    return Window(0, [0] * (len(offsets) + 2), starts, ends, True, True)


def test_alignment_policies():
    # "unbelievable story": un ##believ ##able story
    w = _window([(0, 2), (2, 8), (8, 12), (13, 18)])
    assert align_span(w, 0, 12, "strict") == (1, 3)
    assert align_span(w, 13, 18, "strict") == (4, 4)
    assert align_span(w, 2, 12, "strict") == (2, 3)  # subword boundaries count as boundaries
    assert align_span(w, 3, 12, "strict") is None  # off a token boundary
    assert align_span(w, 3, 12, "expand") == (2, 3)
    assert align_span(w, 3, 12, "contract") == (3, 3)
    assert align_span(w, 3, 5, "contract") is None  # no whole token inside
    assert align_span(w, 12, 18, "expand") == (4, 4)  # leading space: grows to the token it touches
    assert align_span(w, 0, 19, "expand") is None  # beyond the text of the window


def test_tokenizer_alignment_round_trip_english_subwords(tokenizer):
    text = "John Johnson saw unbelievable Paris"
    fz = Featurizer(tokenizer, max_length=64, stride=8)
    (w,) = fz.windows([text])
    for word in text.split():
        s = text.index(word)
        ij = align_span(w, s, s + len(word), "strict")
        assert ij is not None, word
        assert (w.token_starts[ij[0]], w.token_ends[ij[1]]) == (s, s + len(word))
    s = text.index("unbelievable")  # un ##believ ##able: a word of three pieces
    i, j = align_span(w, s, s + 12, "strict")
    assert j == i + 2
    assert align_span(w, s + 2, s + 8, "strict") == (i + 1, i + 1)  # a piece inside the word


def test_windows_cover_long_text_with_overlap(tokenizer):
    text = "张伟在北京的华为公司工作了三年。" * 20  # 320 characters, one token each
    fz = Featurizer(tokenizer, max_length=64, stride=16)
    ws = fz.windows([text, "短"])
    mine = [w for w in ws if w.doc_index == 0]
    assert len(mine) > 5 and mine[0].is_first and mine[-1].is_last and not mine[1].is_first
    assert all(len(w) <= 64 for w in ws)
    covered = np.zeros(len(text), bool)
    for a, b in zip(mine, mine[1:]):
        assert b.char_start < a.char_end  # consecutive windows overlap
        assert a.char_end - b.char_start == 16  # by `stride` tokens (one character each here)
    for w in mine:
        covered[w.char_start : w.char_end] = True
    assert covered.all()
    # every 2-character span is held away from cut edges by some window
    for s in range(0, len(text) - 2, 7):
        assert WindowIndex(mine).owners(s, s + 2), s


def test_touches_cut_only_at_inner_edges(tokenizer):
    fz = Featurizer(tokenizer, max_length=16, stride=4)
    ws = fz.windows(["北京上海杭州成都武汉西安南京广州" * 2])
    first, second = ws[0], ws[1]
    c1, c2 = first.content, second.content
    assert not touches_cut(first, c1[0], c1[0])  # start of the text is not a cut
    assert touches_cut(first, c1[-2], c1[-1])
    assert touches_cut(second, c2[0], c2[1])


def test_featurizer_validates_arguments(tokenizer):
    with pytest.raises(ValueError, match="stride"):
        Featurizer(tokenizer, max_length=16, stride=14)
    with pytest.raises(ValueError, match="max_length"):
        Featurizer(tokenizer, max_length=2, stride=0)


def test_slow_tokenizer_refused_with_fix():
    class SlowTokenizer:  # offsets need a Rust tokenizer; anything without is_fast is refused
        is_fast = False

    with pytest.raises(ValueError, match="fast"):
        Featurizer(SlowTokenizer())


def _reference_content_positions(offsets, special, text):
    """The per-position definition the vectorised ``_content_positions`` must equal."""
    import unicodedata

    n = len(offsets)
    starts, ends = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    for t, ((s, e), sp) in enumerate(zip(offsets, special)):
        if not sp and e > s:
            starts[t], ends[t] = s, e
    for t in range(n - 1):
        if starts[t] >= 0 and starts[t + 1] >= 0 and starts[t + 1] == starts[t] and ends[t + 1] >= ends[t]:
            starts[t] = ends[t] = -1
    covered = {c for s, e in zip(starts.tolist(), ends.tolist()) if s >= 0 for c in range(s, e)}
    for t in np.flatnonzero(ends >= 0):
        e = int(ends[t])
        while e < len(text) and e not in covered and unicodedata.category(text[e]).startswith("M"):
            e += 1
        ends[t] = e
    return starts, ends


def test_vectorised_content_positions_equal_the_per_position_definition():
    import random

    rng = random.Random(0)
    alphabet = "ab é\u0301\u0300中文x\u20dd"  # letters, spaces, combining marks, CJK
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        offsets = []
        for _ in range(rng.randint(1, 8)):
            a = rng.randint(0, len(text))
            offsets.append((a, rng.randint(a, min(len(text), a + 3))))
        special = [rng.random() < 0.2 for _ in offsets]
        got, want = _content_positions(offsets, special, text), _reference_content_positions(offsets, special, text)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (text, offsets, special)


def test_direct_tokenizer_path_equals_the_transformers_call(tokenizer):
    """Featurizer reads the Rust tokenizer directly once it has checked it agrees; on every shipped
    example, long texts across windows included, its windows equal the transformers call's."""
    from conftest import all_texts

    texts = [line for t in all_texts() for line in t.splitlines() if line.strip()][:200]
    texts += [" ".join(texts[:30]), "e\u0301te\u0301 cafe\u0301", "", "🤖 北京 Zürich"]
    for max_length, stride in ((32, 8), (64, 16), (128, 0)):
        fast = Featurizer(tokenizer, max_length, stride)
        slow = Featurizer(tokenizer, max_length, stride)
        slow._direct = False
        a, b = fast.windows(texts), slow.windows(texts)
        assert fast._direct is True
        assert len(a) == len(b) > len(texts)
        for x, y in zip(a, b):
            assert (x.doc_index, x.input_ids, x.is_first, x.is_last) == (y.doc_index, y.input_ids, y.is_first, y.is_last)
            assert x.token_starts.tolist() == y.token_starts.tolist() and x.token_ends.tolist() == y.token_ends.tolist()
