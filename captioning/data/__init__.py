"""Captioning data: annotation loaders (Karpathy, COCO, Flickr8k text), torch datasets, the feature
cache, the synthetic shapes set and dataset download planning."""

from .annotations import DatasetError
from .cache import CacheError, FeatureCache, cache_key
from .dataset import CaptionDataset, PixelDataset, caption_groups, collate_captions
from .download import DownloadError, DownloadItem, download, plan_coco_download, plan_flickr8k_download
from .flickr8k import load_flickr8k, prepare_flickr8k
from .formats import FORMATS, load_dataset, sniff_format
from .records import ImageRecord, load_coco, load_karpathy, split_records
from .shapes import prepare_shapes, write_shapes_dataset

__all__ = ["FORMATS", "CacheError", "CaptionDataset", "DatasetError", "DownloadError", "DownloadItem",
           "FeatureCache", "ImageRecord", "PixelDataset", "cache_key", "caption_groups", "collate_captions", "download",
           "load_coco", "load_dataset", "load_flickr8k", "load_karpathy", "plan_coco_download",
           "plan_flickr8k_download", "prepare_flickr8k", "prepare_shapes", "sniff_format",
           "split_records", "write_shapes_dataset"]
