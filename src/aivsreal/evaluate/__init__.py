"""Stage 5, evaluate: metrics, calibration and robustness, computed without writing files."""
