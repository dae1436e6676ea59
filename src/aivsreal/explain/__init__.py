"""Stage 5, explain: Grad-CAM maps and the images that show them."""
