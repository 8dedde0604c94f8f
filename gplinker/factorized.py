"""The multilabel loss and decoding of Efficient GlobalPointer without the [B, H, n, n] tensor.

Every channel h of an Efficient GlobalPointer head shares the scores ``S_ij`` and differs only by
a start bias ``v_hi`` and an end bias ``u_hj`` (kexue.fm 8877), so the all-cells normaliser of
the loss factorises:

    Σ_ij M_ij exp(S_ij + v_hi + u_hj) = Σ_i exp(v_hi) · Σ_j M_ij exp(S_ij) exp(u_hj)

one batched product ``exp(S) [B, n, n] × exp(u)ᵀ [B, n, H]`` and a weighted sum over i, with M the
allowed cells (padding and special tokens on both axes, the lower triangle). Positive cells need
only gathers. Memory is O(B·n² + B·n·H) instead of O(B·H·n²). Shifts (row maxima of S, channel
maxima of u) and float64 keep it exact; :func:`gplinker.losses.span_loss` on materialised logits
is the reference it is tested against.
"""

from __future__ import annotations

import torch

from gplinker.masks import span_mask

NEG = -1e4  # a finite "minus infinity" for float64 sums: exp underflows to 0, gradients stay finite


def factorized_span_loss(
    scores: torch.Tensor,
    start_bias: torch.Tensor,
    end_bias: torch.Tensor,
    mask: torch.Tensor,
    indices: torch.Tensor,
    tril: bool = True,
) -> torch.Tensor:
    """Sparse multilabel loss of an Efficient GlobalPointer head, summed over channels, mean over batch.

    ``scores``: (B, n, n) shared ``q_i·k_j/√d``; ``start_bias``/``end_bias``: (B, H, n);
    ``mask``: (B, n) positions allowed in spans; ``indices``: (B, H, K) positive flat cells
    ``i*n + j``, 0 = padding. Equal to ``span_loss(head(hidden, mask), indices)``.
    """
    b, n, _ = scores.shape
    h = start_bias.shape[1]
    allowed = span_mask(mask, tril)[:, 0]  # (B, n, n)
    s = scores.double()
    v = start_bias.double()  # (B, H, n)
    u = end_bias.double()  # (B, H, n)

    zeros = torch.zeros(b, h, 1, dtype=s.dtype, device=s.device)
    log_all = _log_all_cells(s, v, u, allowed, zeros)  # (B, H): log(1 + Σ_all e^s)
    if log_all is None:
        # near float64 underflow: logits spread over hundreds (never seen in training); be exact instead
        return _materialized_loss(scores, start_bias, end_bias, mask, indices, tril)

    # positive cells by gathers
    k = indices.shape[-1]
    i, j = indices // n, indices % n  # (B, H, K)
    # gather from the shared (B, n*n) scores directly: an expanded (B, H, n*n) view would make the
    # backward pass allocate exactly the tensor this module exists to avoid
    shared = torch.gather(s.reshape(b, n * n), 1, indices.reshape(b, h * k)).reshape(b, h, k)
    pos = shared + torch.gather(v, 2, i) + torch.gather(u, 2, j)  # (B, H, K)
    real = indices > 0
    log_pos = torch.logsumexp(pos.masked_fill(~real, NEG), dim=-1)  # (B, H): log Σ_pos e^s (≈ NEG if none)
    pos_term = torch.logsumexp(torch.cat([(-pos).masked_fill(~real, NEG), zeros], dim=-1), dim=-1)
    # negatives: log(1 + Σ_all - Σ_pos) = log_all + log(1 - exp(log_pos - log_all)). When the
    # positives hold most of the mass the subtraction cancels (bert4keras #500: a confident positive
    # at +40 hides a false positive at +2), so those channels, few per sample, are summed exactly
    # over their materialised cells with the positives removed.
    gap = (log_pos - log_all).clamp_max(-1e-12)
    neg_term = log_all + torch.log(-torch.expm1(gap))
    risky = real.any(dim=-1) & (gap > -0.7)  # (B, H): positives hold over half of all the mass
    if bool(risky.any()):
        neg_term = _exact_negatives(neg_term, risky, s, v, u, allowed, indices, zeros)
    return (neg_term + pos_term).sum(dim=1).mean().float()


def _log_all_cells(
    s: torch.Tensor, v: torch.Tensor, u: torch.Tensor, allowed: torch.Tensor, zeros: torch.Tensor
) -> torch.Tensor | None:
    """(B, H) log(1 + Σ over allowed cells of exp(S_ij + v_hi + u_hj)), row-shifted, never
    materialising (B, H, n, n); None when a row sum nears float64 underflow."""
    s_masked = s.masked_fill(~allowed, float("-inf"))
    row_max = s_masked.amax(dim=-1).clamp_min(NEG)  # (B, n); rows with no allowed cell -> NEG
    e = torch.exp(s_masked - row_max[..., None])  # (B, n, n), 0 where not allowed
    u_max = u.amax(dim=-1, keepdim=True)  # (B, H, 1)
    eu = torch.exp(u - u_max)  # (B, H, n)
    rows = torch.bmm(e, eu.transpose(1, 2)).transpose(1, 2)  # (B, H, n): Σ_j e_ij exp(u_hj - max)
    has_cells = allowed.any(dim=-1)[:, None, :].expand_as(rows)  # (B, H, n)
    if bool((rows[has_cells] < 1e-200).any()):
        return None
    log_rows = v + row_max[:, None, :] + u_max + torch.log(rows.clamp_min(1e-300))
    log_rows = log_rows.masked_fill(~has_cells, float("-inf"))
    return torch.logsumexp(torch.cat([log_rows, zeros], dim=-1), dim=-1)


def _exact_negatives(
    neg_term: torch.Tensor,
    risky: torch.Tensor,
    s: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    allowed: torch.Tensor,
    indices: torch.Tensor,
    zeros: torch.Tensor,
) -> torch.Tensor:
    """``neg_term`` (B, H) with its ``risky`` channels summed exactly over their materialised cells,
    the positives removed."""
    n = s.shape[-1]
    bs, hs = risky.nonzero(as_tuple=True)
    cells = s[bs] + v[bs, hs][:, :, None] + u[bs, hs][:, None, :]  # (R, n, n), R risky channels only
    cells = cells.masked_fill(~allowed[bs], float("-inf")).reshape(len(bs), n * n)
    cells = cells.scatter(1, indices[bs, hs], float("-inf"))  # remove the positives (index 0 is masked anyway)
    exact = torch.logsumexp(torch.cat([cells, zeros[bs, 0]], dim=-1), dim=-1)  # (R,)
    return neg_term.index_put((bs, hs), exact)


def _materialized_loss(scores, start_bias, end_bias, mask, indices, tril):
    from gplinker.losses import span_loss
    from gplinker.masks import mask_value

    logits = scores[:, None] + start_bias[..., :, None] + end_bias[..., None, :]  # (B, H, n, n)
    logits = logits.masked_fill(~span_mask(mask, tril), mask_value(logits.dtype))
    return span_loss(logits, indices)


def factorized_positive_cells(
    scores: torch.Tensor,
    start_bias: torch.Tensor,
    end_bias: torch.Tensor,
    mask: torch.Tensor,
    tril: bool = True,
    channel_chunk: int = 16,
    threshold: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells ``(b, h, i, j)`` with logit > ``threshold`` and their logits -> ((N, 4) long, (N,) float),
    sorted by cell.

    A cell's logit is ``scores[b, i, j] + start_bias[b, h, i] + end_bias[b, h, j]``, so
    ``max scores[b] + max start_bias[b, h] + max end_bias[b, h]`` (over the allowed cells and text
    positions) bounds every cell of channel h in row b: only the (row, channel) pairs whose bound
    passes the threshold are materialised, ``channel_chunk`` x n² logits at a time. Exact (a pair
    left out has no cell above the threshold), and a schema of 500 labels costs little more than
    one of 5 when few channels fire."""
    allowed = span_mask(mask, tril)  # (B, 1, n, n)
    text = mask.long() > 0  # (B, n)
    neg = float("-inf")
    bound = (
        scores.masked_fill(~allowed[:, 0], neg).amax(dim=(1, 2))[:, None]  # (B, 1)
        + start_bias.masked_fill(~text[:, None, :], neg).amax(dim=-1)  # (B, H)
        + end_bias.masked_fill(~text[:, None, :], neg).amax(dim=-1)
    )
    bs, hs = (bound > threshold).nonzero(as_tuple=True)  # (R,), (R,): the pairs that may fire
    found, values = [], []
    for c0 in range(0, len(bs), channel_chunk):
        b, h = bs[c0 : c0 + channel_chunk], hs[c0 : c0 + channel_chunk]
        logits = scores[b] + start_bias[b, h][:, :, None] + end_bias[b, h][:, None, :]  # (r, n, n)
        hit = (logits > threshold) & allowed[b, 0]  # (r, n, n)
        idx = hit.nonzero()  # (k, 3) rows (pair, i, j)
        values.append(logits[hit])
        found.append(torch.stack([b[idx[:, 0]], h[idx[:, 0]], idx[:, 1], idx[:, 2]], dim=1))
    if not found:
        return torch.zeros((0, 4), dtype=torch.long, device=scores.device), scores.new_zeros(0)
    idx, val = torch.cat(found), torch.cat(values)
    n, heads = scores.shape[-1], start_bias.shape[1]
    key = ((idx[:, 0] * heads + idx[:, 1]) * n + idx[:, 2]) * n + idx[:, 3]
    order = key.argsort()
    return idx[order], val[order]
