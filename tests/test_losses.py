"""The multilabel loss: sparse equals dense, padding is inert, stable and differentiable."""

import torch

from gplinker.losses import dense_span_loss, multilabel_crossentropy, span_loss, sparse_multilabel_crossentropy


def _random_case(seed, b=3, h=4, n=7, max_pos=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, h, n, n, generator=g) * 3
    dense = torch.zeros(b, h, n, n)
    k = max_pos
    idx = torch.zeros(b, h, k, dtype=torch.long)
    for bi in range(b):
        for hi in range(h):
            cnt = int(torch.randint(0, k + 1, (1,), generator=g))
            cells = torch.randperm(n * n - 1, generator=g)[:cnt] + 1  # never cell 0
            idx[bi, hi, :cnt] = cells
            dense.view(b, h, -1)[bi, hi, cells] = 1
    return logits, dense, idx


def test_formula_on_a_hand_computed_row():
    s = torch.tensor([[2.0, -1.0, 0.5]])
    y = torch.tensor([[1, 0, 0]])
    expect = torch.log(1 + torch.exp(torch.tensor(-1.0)) + torch.exp(torch.tensor(0.5))) + torch.log(
        1 + torch.exp(torch.tensor(-2.0))
    )
    assert torch.allclose(multilabel_crossentropy(s, y), expect.reshape(1))


def test_sparse_equals_dense_with_cell_zero_masked():
    for seed in range(5):
        logits, dense, idx = _random_case(seed)
        masked = logits.clone()
        masked.view(*logits.shape[:2], -1)[..., 0] = -1e12  # the (0, 0) cell, as the heads mask [CLS]
        assert torch.allclose(span_loss(logits, idx), dense_span_loss(masked, dense), atol=1e-5)


def test_padding_index_contributes_nothing():
    logits, _, idx = _random_case(1)
    wider = torch.cat([idx, torch.zeros_like(idx)], dim=-1)  # more (0, 0) padding slots
    assert torch.allclose(span_loss(logits, idx), span_loss(logits, wider))
    changed = logits.clone()
    changed[..., 0, 0] += 100.0  # the padded cell's value is irrelevant
    assert torch.allclose(span_loss(changed, idx), span_loss(logits, idx))


def test_empty_channel_has_finite_loss_and_gradient():
    logits = torch.randn(1, 2, 5, 5, requires_grad=True)
    idx = torch.zeros(1, 2, 1, dtype=torch.long)
    loss = span_loss(logits, idx)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.view(1, 2, -1)[..., 0].abs().sum() == 0


def test_stable_when_positives_dominate():
    # one huge positive: the a + log(1 - exp(b - a)) form returns ~0 or negative; exact answer is log(1 + Σ_neg e^s)
    s = torch.full((1, 50), -5.0)
    s[0, 3] = 40.0
    idx = torch.tensor([[3]])
    got = sparse_multilabel_crossentropy(s, idx, mask_zero=True)
    neg = torch.log1p(torch.exp(torch.tensor(-5.0, dtype=torch.float64)) * 48)  # 48 negatives (cell 0 masked)
    pos = torch.log1p(torch.exp(torch.tensor(-40.0, dtype=torch.float64)))
    assert torch.allclose(got.double(), (neg + pos).reshape(1), rtol=1e-5)
    assert got.item() > 0


def test_half_precision_logits_are_scored_in_float32():
    logits, _, idx = _random_case(2)
    full = span_loss(logits, idx)
    half = span_loss(logits.half(), idx)
    assert half.dtype == torch.float32 and torch.allclose(full, half, atol=1e-2)


def test_reduction_sums_channels_and_averages_batch():
    logits, _, idx = _random_case(3, b=2)
    per = sparse_multilabel_crossentropy(logits.reshape(2, 4, -1), idx)  # (B, H)
    assert torch.allclose(span_loss(logits, idx), per.sum(1).mean())
    assert torch.allclose(span_loss(logits[:1], idx[:1]), per[0].sum())
