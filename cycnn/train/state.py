"""Where a training run is, in the form a checkpoint stores it."""
from dataclasses import dataclass, field


@dataclass
class TrainState:
    """Where a run is: the next step to take is ``step`` of ``epoch``; ``global_step`` counts all steps taken."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    train_seconds: float = 0.0
    history: list = field(default_factory=list)
    # The current epoch's running figures, kept here so that an epoch resumed from a checkpoint reports all its steps.
    epoch_seen: int = 0
    epoch_correct: int = 0
    epoch_loss_sum: float = 0.0
