"""Which epoch's prompts a run keeps: the last (default) or the best on validation.

`best_val` follows the authors' later code (BMIPRS): after every epoch the few-shot validation
accuracy is measured; any strict improvement resets a patience counter; the kept "best" moves
only on an improvement of more than `margin` percentage points; training stops once `patience`
epochs in a row brought no strict improvement, but never before epoch `min_epoch` (0-based).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ModelSelector:
    patience: int = 4
    min_epoch: int = 5
    margin: float = 0.01
    best: float = float("-inf")
    best_epoch: int = -1
    bad_epochs: int = 0

    def update(self, epoch: int, accuracy: float) -> tuple[bool, bool]:
        """(keep this epoch as the new best, stop training now) after `epoch` scored `accuracy`."""
        if accuracy > self.best:
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience and epoch >= self.min_epoch:
                return False, True
        if accuracy > self.best + self.margin:
            self.best, self.best_epoch = accuracy, epoch
            return True, False
        return False, False

    def state_dict(self) -> dict:
        return asdict(self)
