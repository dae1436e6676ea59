"""Stage 4, predict: the public Detector, streaming batch scoring of folders, ONNX export and runtime."""
