"""Stage 3, train: the training loop, its augmentation and multi-process (torchrun) support."""
