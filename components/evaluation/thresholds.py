"""The blessing thresholds, apart from TFMA so the command line can read their defaults
without importing it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BlessingThresholds:
    """When the Evaluator blesses a candidate (the Pusher pushes only blessed models)."""

    psnr_margin_db: float = 0.5
    """Required PSNR gain (dB) of the denoised LDCT over the raw LDCT, both vs NDCT."""
    ssim_tolerance: float = 0.0
    """How far the candidate's SSIM may fall below the raw LDCT's (0: it must not drop)."""
    body_rmse_margin: float = 0.10
    """Share by which the candidate's in-body RMSE must be lower than the raw LDCT's (0.10: at
    least 10 % lower). Whole-slice PSNR is dominated by air, which a model can clean while
    making the body worse; this criterion judges the body."""
    body_ssim_tolerance: float = 0.0
    """How far the candidate's in-body SSIM may fall below the raw LDCT's."""
    max_psnr_drop_db: float = 0.0
    max_ssim_drop: float = 0.0
    """How much worse than the baseline (the latest blessed model, or the model a warm start
    began from) the candidate may be."""
    per_patient: bool = False
    """Apply every threshold to each patient too, not only to the whole eval split."""
