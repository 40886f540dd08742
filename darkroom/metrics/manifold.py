"""k-NN manifold metrics: precision/recall (Kynkäänniemi 2019, arXiv:1904.06991) and density/coverage
(Naeem 2020, arXiv:2002.09797).

Pairwise distances are chunked float32 matmuls; every comparison that float32 round-off could flip
(by a rigorous bound) is re-decided from float64 differences, so answers equal a float64 computation's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from darkroom.errors import UserError
from darkroom.metrics.fid import as_features, full_float32_matmul

_UNIT = 2.0 ** -24  # float32 unit round-off
_CELLS = 1 << 24  # float32 entries per distance chunk (64 MiB)


@dataclass(frozen=True)
class Points:
    """A point set ready for chunked distances; build with `prepare`."""
    exact: torch.Tensor  # (N, D) float64 as given: the float64 re-decisions use these
    approx: torch.Tensor  # (N, D) float32, centred: small norms mean small float32 errors
    sqnorm: torch.Tensor  # (N,) float32 squared norms of `approx`, summed in float64


def prepare(features: np.ndarray | torch.Tensor, name: str, center: torch.Tensor | None = None) -> Points:
    """Points for `features` (N, D), centred on `center` (default: their own mean); name is for errors."""
    exact = torch.from_numpy(as_features(features, name))
    center = exact.mean(dim=0) if center is None else center
    if center.shape[0] != exact.shape[1]:
        raise UserError(f"{name} has {exact.shape[1]} features per sample where {center.shape[0]} were expected.")
    approx = (exact - center).float()
    return Points(exact, approx, approx.double().square().sum(dim=1).float())


def _slack(d: int) -> float:
    """Bound on |float32 d^2 - exact d^2| / (|a|^2 + |b|^2 + r^2) for D-dim points a, b and threshold r^2.

    The float32 dot product errs by at most gamma_D |a||b|, gamma_D = D u / (1 - D u) (Higham, Accuracy
    and Stability of Numerical Algorithms, 3.1), for any summation order; rounding inputs, norms,
    additions and the threshold to float32 adds fewer than 16 u.
    """
    return d * _UNIT / (1.0 - d * _UNIT) + 16 * _UNIT


def _approx_sqdist(a: Points, rows: slice, b: Points) -> torch.Tensor:
    """(rows, N_b) float32 squared distances |a|^2 + |b|^2 - 2 a.b."""
    d2 = torch.addmm(b.sqnorm.unsqueeze(0), a.approx[rows], b.approx.T, beta=1.0, alpha=-2.0)
    return d2.add_(a.sqnorm[rows].unsqueeze(1))


def _exact_pairs(a: torch.Tensor, b: torch.Tensor, ia: torch.Tensor, ib: torch.Tensor) -> torch.Tensor:
    """float64 |a[ia] - b[ib]|^2 for index pairs, from differences (no cancellation)."""
    out = torch.empty(ia.shape[0], dtype=torch.float64)
    step = max(1, (1 << 21) // max(a.shape[1], 1))
    for start in range(0, ia.shape[0], step):
        part = slice(start, start + step)
        diff = a.index_select(0, ia[part]).sub_(b.index_select(0, ib[part]))
        out[part] = torch.einsum("ij,ij->i", diff, diff)
    return out


def _row_chunk(n_cols: int, chunk: int | None) -> int:
    """Rows per distance chunk: `chunk` if given, else enough rows to fill _CELLS float32 entries."""
    return max(1, chunk if chunk else _CELLS // max(n_cols, 1))


def _resolve_rows(q: Points, p: Points, rows: torch.Tensor, d2: torch.Tensor, bound: torch.Tensor,
                  slack: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ascending squared distances and indices of every point that could be within `bound` (R,)
    of each row's query, padded with inf; d2 (R, N_p) holds the rows' float32 squared distances."""
    lower = d2 - slack * (q.sqnorm[rows].unsqueeze(1) + p.sqnorm.unsqueeze(0) + d2)
    i, j = (lower <= bound.unsqueeze(1)).nonzero(as_tuple=True)  # row-major: i ascending
    exact = _exact_pairs(q.exact, p.exact, rows[i], j)
    counts = torch.bincount(i, minlength=rows.shape[0])
    slot = torch.arange(i.shape[0]) - (counts.cumsum(0) - counts)[i]
    table = torch.full((rows.shape[0], int(counts.max())), float("inf"), dtype=torch.float64)
    index = torch.zeros(table.shape, dtype=torch.long)
    table[i, slot], index[i, slot] = exact, j
    table, order = table.sort(dim=1)
    return table, index.gather(1, order)


def ranked_neighbours(q: Points, p: Points, ranks: list[int],
                      chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact squared distances (N_q, len(ranks)) float64 and indices of each query's neighbours at
    0-based `ranks` in ascending distance order (the shared k-NN radius helper: rank k within one set
    is the distance to the k-th other sample, the sample itself being rank 0)."""
    n_q, n_p = q.exact.shape[0], p.exact.shape[0]
    if not ranks or min(ranks) < 0 or max(ranks) >= n_p:
        raise UserError(f"k-NN ranks {ranks} must lie in [0, {n_p - 1}] (the reference sample count).")
    top = max(ranks) + 1
    slack = _slack(q.exact.shape[1])
    pick = torch.tensor(ranks)
    out_d2 = torch.empty(n_q, len(ranks), dtype=torch.float64)
    out_idx = torch.empty(n_q, len(ranks), dtype=torch.long)
    step = _row_chunk(n_p, chunk)
    with full_float32_matmul():
        for start in range(0, n_q, step):
            rows = torch.arange(start, min(start + step, n_q))
            d2 = _approx_sqdist(q, slice(start, start + rows.shape[0]), p)
            approx, cand = torch.topk(d2, min(top + 1, n_p), dim=1, largest=False)
            # Error intervals of the float32 values; column `top` stands for every non-candidate, so
            # its interval uses the largest norm. A rank whose interval lies above every earlier
            # interval and below every later one holds the exact neighbour at that rank.
            norms = p.sqnorm[cand]
            padded = cand.shape[1] <= top  # every point is a candidate: nothing lies beyond
            if padded:
                approx, norms = torch.cat([approx, approx[:, -1:]], dim=1), torch.cat([norms, norms[:, -1:]], dim=1)
            norms[:, top] = p.sqnorm.max()
            tol = slack * (q.sqnorm[rows].unsqueeze(1) + norms + approx)
            lo, hi = approx - tol, approx + tol
            if padded:
                lo[:, top] = float("inf")
            later = lo.flip(1).cummin(dim=1).values.flip(1)[:, pick + 1]  # min lower bound after each rank
            earlier = torch.where(pick > 0, hi.cummax(dim=1).values[:, (pick - 1).clamp_min(0)], -float("inf"))
            sure = ((hi[:, pick] < later) & (earlier < lo[:, pick])).all(dim=1)
            chosen = cand[:, pick]
            exact = _exact_pairs(q.exact, p.exact, rows.repeat_interleave(len(ranks)), chosen.flatten())
            out_d2[rows], out_idx[rows] = exact.view(-1, len(ranks)), chosen
            redo = (~sure).nonzero().flatten()
            if redo.numel():
                # At least `top` points lie within the largest upper bound among the first `top`.
                bound = hi[redo, :top].max(dim=1).values
                table, index = _resolve_rows(q, p, rows[redo], d2[redo], bound, slack)
                out_d2[rows[redo]], out_idx[rows[redo]] = table[:, pick], index[:, pick]
    return out_d2, out_idx


def knn_distances(queries: np.ndarray | torch.Tensor, points: np.ndarray | torch.Tensor, k: int,
                  chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean distances (N, k) float64 and indices (N, k) int64 of each query's k nearest points.

    With queries = points, column 0 is each point itself (distance 0), so column k is the distance to
    the k-th nearest other point: the radius the k-NN papers' code uses.
    """
    p = prepare(points, "points")
    q = prepare(queries, "queries", center=p.exact.mean(dim=0))
    d2, idx = ranked_neighbours(q, p, list(range(k)), chunk)
    return d2.sqrt().numpy(), idx.numpy()


def _inside(d2: torch.Tensor, thr2: torch.Tensor, tol: torch.Tensor, a: Points, rows: slice, b: Points,
            any_dim: int | None = None, settled: torch.Tensor | bool = False) -> torch.Tensor:
    """Exact `d^2 <= thr^2` over a chunk (closed balls); thr2 and tol broadcast against d2 (rows, N_b).

    When the caller only reads `.any(any_dim)`, rows or columns already holding a sure hit (or marked
    in `settled`, broadcast like the reduction's keepdim output) keep their float32 answers elsewhere.
    """
    margin = d2 - thr2.float()
    inside = margin <= 0
    unsure = margin.abs() <= tol
    if any_dim is not None:
        unsure &= ~((inside & ~unsure).any(dim=any_dim, keepdim=True) | settled)
    i, j = unsure.nonzero(as_tuple=True)
    if i.numel():
        exact = _exact_pairs(a.exact, b.exact, i + rows.start, j)
        inside[i, j] = exact <= thr2.expand_as(d2)[i, j]
    return inside


def _cross(r: Points, f: Points, real_pr: torch.Tensor | None, real_dc: torch.Tensor | None,
           fake_pr: torch.Tensor | None, chunk: int | None) -> dict[str, torch.Tensor]:
    """One pass over real x fake distances against squared radii around real (N_r,) and fake (N_f,) samples."""
    n_r, n_f = r.exact.shape[0], f.exact.shape[0]
    slack = _slack(r.exact.shape[1])
    fake_hit = torch.zeros(1, n_f, dtype=torch.bool)  # precision: fake inside some real ball
    dc_hits = torch.zeros(n_f, dtype=torch.long)  # density: real balls around each fake
    covered = torch.zeros(n_r, dtype=torch.bool)  # coverage: real ball holding some fake
    recalled = torch.zeros(n_r, dtype=torch.bool)  # recall: real inside some fake ball
    step = _row_chunk(n_f, chunk)
    with full_float32_matmul():
        for start in range(0, n_r, step):
            rows = slice(start, min(start + step, n_r))
            d2 = _approx_sqdist(r, rows, f)
            scale = r.sqnorm[rows].unsqueeze(1) + f.sqnorm.max()  # (rows, 1) bound on |a|^2 + |b|^2
            if real_pr is not None:
                thr2 = real_pr[rows].unsqueeze(1)
                inside = _inside(d2, thr2, slack * (scale + thr2.float()), r, rows, f, any_dim=0, settled=fake_hit)
                fake_hit |= inside.any(dim=0, keepdim=True)
            if real_dc is not None:
                thr2 = real_dc[rows].unsqueeze(1)
                inside = _inside(d2, thr2, slack * (scale + thr2.float()), r, rows, f)
                dc_hits += inside.sum(dim=0)
                covered[rows] = inside.any(dim=1)
            if fake_pr is not None:
                thr2 = fake_pr.unsqueeze(0)
                col_scale = r.sqnorm[rows].max() + f.sqnorm.unsqueeze(0)
                inside = _inside(d2, thr2, slack * (col_scale + thr2.float()), r, rows, f, any_dim=1)
                recalled[rows] = inside.any(dim=1)
    return {"fake_hit": fake_hit.flatten(), "dc_hits": dc_hits, "covered": covered, "recalled": recalled}


def _manifold(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k_pr: int | None,
              k_dc: int | None, chunk: int | None) -> dict[str, float]:
    r = prepare(real, "real")
    f = prepare(fake, "fake", center=r.exact.mean(dim=0))
    ks = [k for k in (k_pr, k_dc) if k is not None]
    real_d2 = dict(zip(ks, ranked_neighbours(r, r, ks, chunk)[0].T))  # rank 0 is the sample itself
    fake_pr = None if k_pr is None else ranked_neighbours(f, f, [k_pr], chunk)[0][:, 0]
    hits = _cross(r, f, real_d2.get(k_pr), real_d2.get(k_dc), fake_pr, chunk)
    out: dict[str, float] = {}
    if k_pr is not None:
        out["precision"] = hits["fake_hit"].double().mean().item()
        out["recall"] = hits["recalled"].double().mean().item()
    if k_dc is not None:
        out["density"] = hits["dc_hits"].double().mean().item() / k_dc
        out["coverage"] = hits["covered"].double().mean().item()
    return out


def precision_recall(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = 3,
                     chunk: int | None = None) -> dict[str, float]:
    """Improved precision and recall (Kynkäänniemi 2019, arXiv:1904.06991): the fraction of fake samples
    inside the real k-NN manifold (union of closed balls reaching each real sample's k-th neighbour),
    and of real samples inside the fake manifold."""
    return _manifold(real, fake, k, None, chunk)


def density_coverage(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = 5,
                     chunk: int | None = None) -> dict[str, float]:
    """Density and coverage (Naeem 2020, arXiv:2002.09797): real k-NN balls containing each fake sample,
    averaged and divided by k (about 1 for matching distributions, unbounded above), and the fraction
    of real balls holding at least one fake sample (exposes dropped modes that precision misses)."""
    return _manifold(real, fake, None, k, chunk)


def prdc(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k_pr: int = 3, k_dc: int = 5,
         chunk: int | None = None) -> dict[str, float]:
    """Precision, recall (k_pr) and density, coverage (k_dc) sharing the k-NN searches and one cross pass.

    Radii count the sample itself as neighbour 0, as the papers' code does. Balls are closed (<=, as
    Kynkäänniemi and torch-fidelity); the prdc package uses < , the same for continuous features.
    """
    return _manifold(real, fake, k_pr, k_dc, chunk)


# ---------------------------------------------------------------------------------------------- subset errors
FOLDS, PARTITIONS, MIN_FOLD = 10, 5, 250  # 50 fold scores per metric at a cost of half a full-size computation;
# folds of fewer than 250 samples measured too little spread (density 0.66x at 100 per fold)


def prdc_standard_errors(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k_pr: int = 3,
                         k_dc: int = 5, folds: int = FOLDS, partitions: int = PARTITIONS,
                         seed: int = 0) -> dict[str, float]:
    """Standard errors of `prdc`'s four numbers by subsets: each of `partitions` seeded random splits cuts both
    sets into `folds` disjoint pairs of folds, scored with radii of their own; the variance of a fold's score
    divided by `folds` is the variance at the full size (these k-NN statistics are averages whose variance falls
    as 1/n), averaged over the partitions.

    Not the bootstrap: resampling with replacement duplicates points, which shrinks k-NN radii to 0 and
    empties balls, and in planted Gaussians its spread of recall and coverage came out 1.5-1.9x the true one;
    these subsets measured 0.8-1.1x (precision the lowest) at n = 1000-2000.
    """
    r = as_features(real, "real", min_rows=2)
    f = as_features(fake, "fake", min_rows=2)
    folds = min(folds, len(r) // max(MIN_FOLD, 2 * k_dc + 2), len(f) // max(MIN_FOLD, 2 * k_pr + 2))
    if folds < 2:
        return {key: float("nan") for key in ("precision", "recall", "density", "coverage")}
    rng = np.random.default_rng([seed, 5])
    variances: dict[str, list[float]] = {"precision": [], "recall": [], "density": [], "coverage": []}
    for _ in range(partitions):
        scores = [_manifold(r[a], f[b], k_pr, k_dc, None) for a, b in
                  zip(np.array_split(rng.permutation(len(r)), folds), np.array_split(rng.permutation(len(f)), folds))]
        for key, values in variances.items():
            values.append(float(np.var([score[key] for score in scores], ddof=1)) / folds)
    return {key: float(np.sqrt(np.mean(values))) for key, values in variances.items()}
