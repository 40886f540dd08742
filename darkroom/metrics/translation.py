"""CycleGAN translation scores (arXiv:1703.10593): does A->B output classify as B, match real B features,
and come back to the input through B->A."""
from __future__ import annotations

import numpy as np
import torch

from darkroom.errors import UserError
from darkroom.metrics.fid import fid_from_features


def translation_scores(pred_target_labels: np.ndarray | torch.Tensor, target_class: int,
                       translated_feats: np.ndarray | torch.Tensor, real_target_feats: np.ndarray | torch.Tensor,
                       cycle_error: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Target-class accuracy of a domain classifier on translated images, FID of translated vs real
    target-domain features, and the mean absolute cycle reconstruction error.

    cycle_error: residuals x - F(G(x)) of any shape (pixels in the images' own scale), or per-sample
    mean absolute errors of equally sized images; either way its mean |.| is the cycle L1.
    """
    labels = np.asarray(pred_target_labels.detach().cpu() if isinstance(pred_target_labels, torch.Tensor)
                        else pred_target_labels).reshape(-1)
    errors = np.asarray(cycle_error.detach().cpu() if isinstance(cycle_error, torch.Tensor) else cycle_error,
                        dtype=np.float64)
    if labels.size == 0 or errors.size == 0:
        raise UserError("translation_scores needs at least one prediction and one cycle error.")
    return {
        "translation_target_accuracy": float(np.mean(labels == target_class)),
        "translation_fid": fid_from_features(translated_feats, real_target_feats),
        "translation_cycle_l1": float(np.mean(np.abs(errors))),
    }
