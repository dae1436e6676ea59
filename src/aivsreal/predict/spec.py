"""How to load a detector, as the command line says it: sent to remote workers (the Ray engine) instead
of the detector itself, so that every engine loads it the same way."""

from __future__ import annotations

from dataclasses import dataclass

from aivsreal.models.hub import ModelRef
from aivsreal.predict.detector import Detector


@dataclass(frozen=True)
class DetectorSpec:
    """How to load a detector, as the command line says it: what a remote worker is sent instead of the
    detector itself, so that every engine loads it the same way."""

    model: ModelRef = None
    device: str = "auto"
    backend: str = "torch"
    precision: str = "bf16"
    threshold: float | None = None  # None: the model's own

    def load(self) -> Detector:
        det = Detector.load(self.model, device=self.device, backend=self.backend, precision=self.precision)
        if self.threshold is not None:
            det.threshold = self.threshold
        return det
