"""The questions of a run: every format of `config.format` loaded and mixed ("easy-vqa+shapes"). Both
`vqa train` and `vqa evaluate` read data through here; only training needs a train split (it checks)."""

from __future__ import annotations

from captioning.data.annotations import DatasetError

from .config import QATask, TrainConfig
from .data import QADataset, load_easy_vqa, load_shapes, load_visual7w
from .vqa_format import load_vqa_v2


def load_sources(config: TrainConfig) -> QADataset:
    """The run's questions, from every format of `config.format`; `limit` caps the training questions."""
    task = config.model.task
    annotated = [f for f in config.formats if f in ("visual7w", "shapes", "vqa")]
    if len(annotated) > 1:
        raise DatasetError(f"--annotations can feed only one of {', '.join(annotated)}")
    needs_files = [f for f in config.formats if f in ("visual7w", "shapes")]
    if needs_files and (config.annotations is None or config.images is None):
        raise DatasetError(f"--format {needs_files[0]} needs --annotations FILE and --images DIR")
    if "vqa" in config.formats and (config.questions is None or config.images is None):
        raise DatasetError("--format vqa needs --questions FILE and --images DIR (and --annotations FILE, "
                           "except for a test split)")
    if task == QATask.POINTING and config.formats != ["visual7w"]:
        raise DatasetError("pointing questions come from Visual7W only (--format visual7w --task pointing)")
    dataset: QADataset | None = None
    for name in config.formats:
        if name == "visual7w":
            part = load_visual7w(config.annotations, config.images, task, skip_invalid=config.skip_invalid)
        elif name == "easy-vqa":
            part = load_easy_vqa(config.val_holdout, config.seed, config.choices_seed)
        elif name == "vqa":
            part = load_vqa_v2(config.questions, config.annotations, config.images, image_pattern=config.image_pattern,
                               split=config.questions_split, val_holdout=config.val_holdout, seed=config.seed,
                               skip_invalid=config.skip_invalid)
        else:
            part = load_shapes(config.annotations, config.images, skip_invalid=config.skip_invalid)
        dataset = part if dataset is None else dataset.merge(part)
    assert dataset is not None
    if config.limit is not None:
        train = dataset.split("train")[:config.limit]
        keep = {id(q) for q in train}
        dataset.questions = [q for q in dataset.questions if q.split != "train" or id(q) in keep]
    return dataset
