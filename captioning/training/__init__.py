"""The training library both products use (`captioning train`, `vqa train`): typed configuration
(`options`), the run's training state and checkpoint folders (`state`), processes (`distributed`) and
the `Trainer` loop with its hooks (`trainer`)."""

from .distributed import Dist, epoch_batches, setup_distributed
from .options import RUN_CONFIG, ConfigSchema, read_yaml_mapping
from .state import (
    TRAINER_JSON,
    TRAINER_TENSORS,
    TrainerState,
    TrainingError,
    can_resume,
    finished_message,
    load_state,
    prepare_run_folder,
    recover_folder,
    run_folder_lock,
    saved_state,
    state_files,
)
from .trainer import Hooks, Trainer, TrainerSettings, Validation

__all__ = ["RUN_CONFIG", "TRAINER_JSON", "TRAINER_TENSORS", "ConfigSchema", "Dist", "Hooks", "Trainer",
           "TrainerSettings", "TrainerState", "TrainingError", "Validation", "can_resume", "epoch_batches",
           "finished_message", "load_state", "prepare_run_folder", "run_folder_lock", "read_yaml_mapping", "recover_folder",
           "saved_state", "setup_distributed", "state_files"]
