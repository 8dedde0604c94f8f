"""The factorised Efficient GlobalPointer loss and decoder equal the materialised reference."""

import pytest
import torch

from gplinker.factorized import factorized_positive_cells, factorized_span_loss
from gplinker.heads import EfficientGlobalPointer
from gplinker.losses import span_loss


def _case(seed, b=3, n=9, h=5, k=4, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = EfficientGlobalPointer(16, h, head_size=8)
    with torch.no_grad():
        for p in head.parameters():
            p.mul_(scale)
    hidden = torch.randn(b, n, 16, generator=g)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[:, 0] = False  # [CLS]
    mask[1, 6:] = False  # padding
    mask[2, 3] = False  # a lone metaspace piece
    idx = torch.zeros(b, h, k, dtype=torch.long)
    for bi in range(b):
        for hi in range(h):
            cnt = int(torch.randint(0, k + 1, (1,), generator=g))
            cells = [(i, j) for i in range(n) for j in range(i, n) if mask[bi, i] and mask[bi, j]]
            pick = torch.randperm(len(cells), generator=g)[:cnt]
            idx[bi, hi, :cnt] = torch.tensor([cells[p][0] * n + cells[p][1] for p in pick], dtype=torch.long)
    return head, hidden, mask, idx


@pytest.mark.parametrize("seed,scale", [(0, 1.0), (1, 1.0), (2, 8.0), (3, 30.0), (7, 30.0), (8, 60.0)])
def test_factorized_loss_equals_materialized(seed, scale):
    head, hidden, mask, idx = _case(seed, scale=scale)
    reference = span_loss(head(hidden, mask), idx)
    s, v, u = head.factors(hidden)
    got = factorized_span_loss(s, v, u, mask, idx, tril=True)
    assert torch.allclose(got, reference, rtol=1e-5, atol=1e-4), (got, reference)


def test_factorized_gradients_equal_materialized():
    head, hidden, mask, idx = _case(4)
    hidden.requires_grad_(True)
    span_loss(head(hidden, mask), idx).backward()
    ref = [p.grad.clone() for p in head.parameters()] + [hidden.grad.clone()]
    head.zero_grad()
    hidden.grad = None
    factorized_span_loss(*head.factors(hidden), mask, idx).backward()
    got = [p.grad for p in head.parameters()] + [hidden.grad]
    for a, r in zip(got, ref):
        assert torch.allclose(a, r, rtol=1e-4, atol=1e-5)


def test_factorized_without_triangle_and_with_empty_rows():
    head, hidden, mask, idx = _case(5)
    head.tril_mask = False
    mask[0] = False  # a window with no text at all
    idx[0] = 0
    reference = span_loss(head(hidden, mask), idx)
    got = factorized_span_loss(*head.factors(hidden), mask, idx, tril=False)
    assert torch.isfinite(got) and torch.allclose(got, reference, rtol=1e-5, atol=1e-4)


def test_factorized_decoding_equals_materialized():
    head, hidden, mask, _ = _case(6, scale=3.0)
    logits = head(hidden, mask)
    ref = (logits > 0).nonzero()
    cells, values = factorized_positive_cells(*head.factors(hidden), mask, tril=True, channel_chunk=2)
    assert torch.equal(cells, ref)
    assert torch.allclose(values, logits[ref[:, 0], ref[:, 1], ref[:, 2], ref[:, 3]], atol=1e-5)


def test_confident_positive_does_not_hide_a_false_positive():
    # positive at +40, a negative at +2: Σ_all - Σ_pos cancels in floating point unless summed exactly
    n = 6
    scores = torch.full((1, n, n), -10.0)
    scores[0, 1, 3] = 40.0
    scores[0, 2, 4] = 2.0
    v, u = torch.zeros(1, 1, n), torch.zeros(1, 1, n)
    mask = torch.ones(1, n, dtype=torch.bool)
    mask[0, 0] = False
    idx = torch.tensor([[[1 * n + 3]]])
    from gplinker.factorized import _materialized_loss

    want = _materialized_loss(scores, v, u, mask, idx, True)
    got = factorized_span_loss(scores, v, u, mask, idx, tril=True)
    assert torch.allclose(got, want, atol=1e-4)
    assert got.item() > 2.0  # log(1 + e^2 + ...) is kept


def _all_channels_reference(scores, start_bias, end_bias, mask, tril, threshold):
    """Every channel's logits materialised: the definition the pruned search must equal."""
    from gplinker.masks import span_mask

    logits = scores[:, None] + start_bias[..., :, None] + end_bias[..., None, :]  # (B, H, n, n)
    hit = (logits > threshold) & span_mask(mask, tril)
    return hit.nonzero(), logits[hit]


@pytest.mark.parametrize("seed", range(6))
def test_bound_pruned_positive_cells_equal_every_channel_materialised(seed):
    """Pruning (row, channel) pairs by the bound max scores + max start + max end loses no cell:
    the same cells, in the same order, with bitwise the same logits."""
    g = torch.Generator().manual_seed(seed)
    b, h, n = 3, 40, 9
    scores = torch.randn(b, n, n, generator=g) * 2
    start, end = torch.randn(b, h, n, generator=g) * 2 - 3, torch.randn(b, h, n, generator=g) * 2 - 3  # most channels silent
    mask = torch.ones(b, n, dtype=torch.long)
    mask[1, 6:] = 0  # a shorter text
    mask[2] = torch.tensor([1, 1, 1, 2, 2, 2, 2, 0, 0])  # two packed segments
    for tril in (True, False):
        for threshold in (0.0, -1.0, 2.0):
            got_idx, got_val = factorized_positive_cells(scores, start, end, mask, tril, channel_chunk=4, threshold=threshold)
            ref_idx, ref_val = _all_channels_reference(scores, start, end, mask, tril, threshold)
            assert torch.equal(got_idx, ref_idx) and torch.equal(got_val, ref_val)
    none = factorized_positive_cells(scores, start - 100, end, mask)  # nothing can fire
    assert none[0].shape == (0, 4) and none[1].shape == (0,)
