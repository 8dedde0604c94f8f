"""GlobalPointer heads: RoPE's defining property, masks on both axes, Efficient GP's structure."""

import torch

from gplinker.heads import EfficientGlobalPointer, GlobalPointer, mask_value, rope, span_mask


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    d, n = 64, 12
    q, k = torch.randn(d), torch.randn(d)
    qs, ks = rope(q.expand(n, d).clone()), rope(k.expand(n, d).clone())  # constant inputs at every position
    scores = qs @ ks.T  # (n, n)
    for offset in range(-n + 1, n):
        diag = torch.diagonal(scores, offset=offset)
        assert torch.allclose(diag, diag[0].expand_as(diag), atol=1e-4), offset
    assert not torch.allclose(scores[0, 1], scores[0, 5])  # and it does depend on the distance


def test_rope_rotates_along_sequence_axis_not_heads():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 8)  # (B, H, n, d)
    out = rope(x)
    assert torch.allclose(out[:, :, 0], x[:, :, 0])  # position 0 is not rotated, for every head
    assert torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation keeps norms
    # the same vector at the same position gets the same rotation whatever its head
    y = x.clone()
    y[:, 1] = y[:, 0]
    assert torch.allclose(rope(y)[:, 1], rope(y)[:, 0])


def test_rope_interleaved_pairs():
    x = torch.zeros(2, 4)
    x[:, 0] = 1.0  # first pair (x0, x1) = (1, 0)
    out = rope(x)
    assert torch.allclose(out[1, :2], torch.tensor([torch.cos(torch.tensor(1.0)), torch.sin(torch.tensor(1.0))]))
    assert torch.allclose(out[1, 2:], torch.zeros(2))


def test_span_mask_masks_both_axes_and_lower_triangle():
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    m = span_mask(mask, tril=False)[0, 0]
    assert m[:3, :3].all() and not m[3:].any() and not m[:, 3:].any()
    t = span_mask(mask, tril=True)[0, 0]
    assert t[0, 2] and not t[2, 0] and t[1, 1]


def _check_head(head_cls, tril):
    torch.manual_seed(0)
    head = head_cls(16, 3, head_size=8, use_rope=True, tril_mask=tril)
    h = torch.randn(2, 6, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0]])
    logits = head(h, mask)  # (B, H, n, n)
    assert logits.shape == (2, 3, 6, 6)
    neg = mask_value(logits.dtype)
    assert (logits[1, :, 0, :] == neg).all() and (logits[1, :, :, 0] == neg).all()  # padding rows AND columns
    assert (logits[1, :, 4:, :] == neg).all() and (logits[1, :, :, 4:] == neg).all()
    if tril:
        assert (logits[0, :, 3, 1] == neg).all()  # j < i masked
    else:
        assert (logits[0, :, 3, 1] != neg).all()
    # trailing padding must not change the scores of real positions (same positions, so same RoPE)
    short = head(h[1:, :4], mask[1:, :4])
    assert torch.allclose(short[0, :, 1:4, 1:4], logits[1, :, 1:4, 1:4], atol=1e-5)
    return head


def test_global_pointer_masks():
    _check_head(GlobalPointer, tril=True)
    _check_head(GlobalPointer, tril=False)


def test_efficient_global_pointer_masks_and_structure():
    head = _check_head(EfficientGlobalPointer, tril=True)
    torch.manual_seed(1)
    h = torch.randn(1, 5, 16)
    scores, start_bias, end_bias = head.factors(h)
    logits = head(h, torch.ones(1, 5))
    # cell (h, i, j) = shared score + start bias of i + end bias of j (upper triangle)
    for c in range(3):
        for i in range(5):
            for j in range(i, 5):
                expect = scores[0, i, j] + start_bias[0, c, i] + end_bias[0, c, j]
                assert torch.allclose(logits[0, c, i, j], expect, atol=1e-5)


def test_efficient_bias_channels_even_end_odd_start():
    torch.manual_seed(0)
    head = EfficientGlobalPointer(8, 2, head_size=4, use_rope=False, tril_mask=False)
    with torch.no_grad():
        head.q_dense.weight.zero_()
        head.q_dense.bias.zero_()
        head.q_dense.bias[1] = 2.0  # odd channel 1 -> start bias of label 0 (divided by 2)
    h = torch.randn(1, 3, 8)
    scores, sb, eb = head.factors(h)
    assert torch.allclose(sb[0, 0], torch.ones(3)) and torch.allclose(eb, torch.zeros_like(eb))


def test_masking_is_finite_in_half_precision():
    for dtype in (torch.float16, torch.bfloat16):
        head = GlobalPointer(8, 2, head_size=4).to(dtype)
        logits = head(torch.randn(1, 4, 8, dtype=dtype), torch.tensor([[1, 1, 0, 0]]))
        assert torch.isfinite(logits).all(), dtype
        assert (logits[0, :, 3, 3] < -1000).all()


GROUPS = [("type=A", "role=x"), ("type=A", "role=y"), ("type=B", "role=x")]


def test_shared_label_bias_starts_at_zero_and_adds_each_groups_bias():
    import pytest

    for cls in (EfficientGlobalPointer, GlobalPointer):
        torch.manual_seed(0)
        shared = cls(16, 3, head_size=8, groups=GROUPS)
        torch.manual_seed(0)
        plain = cls(16, 3, head_size=8)
        h, mask = torch.randn(2, 6, 16), torch.ones(2, 6)
        with torch.no_grad():
            shared.shared.dense.weight.zero_()
        assert torch.allclose(shared(h, mask), plain(h, mask))  # no group bias: the head's own logits
        with torch.no_grad():
            shared.shared.dense.weight.normal_()
            shared.shared.dense.bias.normal_()
        g = shared.shared(shared.p_dense(h) if cls is EfficientGlobalPointer else h)  # (B, n, H, 2)
        names = shared.shared.names
        group = shared.shared.dense(shared.p_dense(h) if cls is EfficientGlobalPointer else h).view(2, 6, len(names), 2)
        for label, gs in enumerate(GROUPS):  # each label's added bias is the sum of its groups' biases
            expect = sum(group[:, :, names.index(x)] for x in gs)
            assert torch.allclose(g[:, :, label], expect, atol=1e-5)
        diff = shared(h, mask) - plain(h, mask)  # the added biases reach the logits: start on i, end on j
        half = 0.5 if cls is EfficientGlobalPointer else 1.0  # Efficient GP halves its biases (q_dense's too)
        assert torch.allclose(diff[0, 0, 1, 3], half * (g[0, 1, 0, 1] + g[0, 3, 0, 0]), atol=1e-4)
        with pytest.raises(ValueError, match="groups"):
            from gplinker.heads import build_head

            build_head("efficient", 16, 2, 8, groups=GROUPS)


def test_a_label_seen_once_learns_from_its_role_under_other_types():
    """One optimiser step on a positive of (A, x) raises the same cell for (B, x) through the
    shared role bias: with label sharing, (B, x) rises more than without."""
    from gplinker.losses import span_loss

    rises = {}
    for groups in (GROUPS, ()):
        torch.manual_seed(0)
        head = EfficientGlobalPointer(16, 3, head_size=8, groups=groups)
        h, mask = torch.randn(1, 6, 16), torch.ones(1, 6)
        before = head(h, mask)[0, 2, 1, 3].item()  # label (B, x), cell (1, 3)
        labels = torch.tensor([[[1 * 6 + 3], [0], [0]]])  # only (A, x) has a positive: cell (1, 3)
        opt = torch.optim.SGD(head.parameters(), lr=0.5)
        span_loss(head(h, mask), labels).backward()
        opt.step()
        rises[bool(groups)] = head(h, mask)[0, 2, 1, 3].item() - before
    assert rises[True] > rises[False]
