"""Stage 1, data: find REAL/FAKE images, decode untrusted bytes, cache, split, perturb, download."""
