"""nnUNetTrainerDeadline: nnU-Net v2's default trainer stopped at a wall-clock deadline."""

from __future__ import annotations

import time

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerDeadline(nnUNetTrainer):
    """Epochs of nnU-Net's 250 iterations until ``deadline`` (time.monotonic(), set before
    ``run_training``); the deadline ends the last epoch's training and validation batches early
    (one of each at least). The learning rate follows nnU-Net's poly schedule over its 1000
    epochs, as it does for a user who stops the default trainer. ``steps`` counts the batches."""

    deadline = float("inf")
    steps = 0

    def run_training(self) -> None:  # nnUNetTrainer.run_training, the deadline checked per batch
        self.on_train_start()
        while self.current_epoch < self.num_epochs and (self.steps == 0 or not self._late()):
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = []
            while len(outputs) < self.num_iterations_per_epoch and not (outputs and self._late()):
                outputs.append(self.train_step(next(self.dataloader_train)))
            self.steps += len(outputs)
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                validation = []
                while len(validation) < self.num_val_iterations_per_epoch and not (validation and self._late()):
                    validation.append(self.validation_step(next(self.dataloader_val)))
                self.on_validation_epoch_end(validation)
            self.on_epoch_end()
        self.on_train_end()

    def _late(self) -> bool:
        return time.monotonic() >= self.deadline
