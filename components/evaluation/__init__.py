"""Model evaluation for the LDCT→NDCT denoiser: image-quality metrics and the TFMA EvalConfig.

`image_metrics` holds pure NumPy/TF functions (PSNR, SSIM, RMSE in HU, body mask);
`tfma_metrics` wraps them as TFMA custom metrics for the standard TFX Evaluator;
`eval_config` builds the `tfma.EvalConfig` (slicing, value and change thresholds).
Import the submodules directly; this package import stays light (no TF / TFMA).
"""
