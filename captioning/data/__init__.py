"""Captioning data: annotation loaders, torch datasets, the feature cache, the synthetic shapes set
and COCO download planning."""

from .cache import CacheError, FeatureCache, cache_key
from .dataset import CaptionDataset, PixelDataset, caption_groups, collate_captions
from .download import DownloadError, DownloadItem, download, plan_coco_download
from .records import (
    DatasetError,
    ImageRecord,
    load_coco,
    load_dataset,
    load_karpathy,
    sniff_format,
    split_records,
)
from .shapes import prepare_shapes, shapes_questions, write_shapes_dataset

__all__ = ["CacheError", "CaptionDataset", "DatasetError", "DownloadError", "DownloadItem", "FeatureCache",
           "ImageRecord", "PixelDataset", "cache_key", "caption_groups", "collate_captions", "download", "load_coco", "load_dataset",
           "load_karpathy", "plan_coco_download", "prepare_shapes", "shapes_questions", "sniff_format",
           "split_records", "write_shapes_dataset"]
