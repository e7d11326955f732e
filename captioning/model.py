"""The captioner users hold: encoder + decoder + vocabulary, with `caption(images)` as its face."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from . import checkpoint as ckpt
from .config import ModelConfig
from .decoder import DecoderOutput, ShowAttendTellDecoder
from .encoders import create_encoder
from .search import Hypothesis, beam_search, sequential_search
from .vocab import Vocabulary

BUNDLED_DIR = Path(__file__).parent / "bundled"
FORMAT = "showtell-captioner/1"


@dataclass
class CaptionResult:
    text: str
    tokens: list[str]
    log_prob: float
    attention: torch.Tensor                 # (words, H, W), one map per word in `tokens`
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # other beams: (text, log-prob)


class Captioner(nn.Module):
    def __init__(self, config: ModelConfig, vocab: Vocabulary, *, pretrained_encoder: bool = True):
        super().__init__()
        self.config, self.vocab = config, vocab
        self.encoder = create_encoder(config.encoder, pretrained=pretrained_encoder, grid_size=config.grid_size,
                                      image_size=config.image_size, fine_tune_blocks=config.fine_tune_blocks)
        self.decoder = ShowAttendTellDecoder(config, len(vocab), self.encoder.channels)
        self._encoder_is_pretrained = pretrained_encoder

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    def forward(self, pixels: torch.Tensor, captions: torch.Tensor) -> DecoderOutput:
        """Training from pixels (B, 3, S, S) and padded caption ids (B, T)."""
        return self.decoder(self.encoder(pixels), captions)

    # ---- decoding ------------------------------------------------------------------------
    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image], *, beam_size: int = 3, sample: bool = False,
                temperature: float = 1.0, max_len: int | None = None, length_penalty: float = 0.0,
                num_results: int = 1, batch_size: int = 32, seed: int | None = None) -> list[CaptionResult]:
        """Caption PIL images of any size and mode. beam_size=1 is greedy; sample=True samples."""
        if isinstance(images, Image.Image):
            images = [images]
        was_training = self.training
        self.eval()
        out: list[CaptionResult] = []
        try:
            for i in range(0, len(images), batch_size):
                features = self.encoder.encode_pil(images[i:i + batch_size])
                out += self.caption_features(features, beam_size=beam_size, sample=sample, temperature=temperature,
                                             max_len=max_len, length_penalty=length_penalty,
                                             num_results=num_results, seed=seed)
        finally:
            self.train(was_training)
        return out

    @torch.inference_mode()
    def caption_features(self, features: torch.Tensor, *, beam_size: int = 3, sample: bool = False,
                         temperature: float = 1.0, max_len: int | None = None, length_penalty: float = 0.0,
                         num_results: int = 1, seed: int | None = None) -> list[CaptionResult]:
        """Caption from encoder grids (B, P, D), e.g. read from a feature cache."""
        features = features.to(self.device, next(self.decoder.parameters()).dtype)
        dec = self.decoder
        memory, state = tuple(dec.memory(features)), dec.init_state(features)
        v = self.vocab
        max_len = self.config.max_len if max_len is None else max_len
        if max_len < 1 or beam_size < 1 or num_results < 1:
            raise ValueError(f"max_len, beam_size and num_results must be >= 1 "
                             f"(got {max_len}, {beam_size}, {num_results})")
        step = dec.step
        if sample or beam_size == 1:
            gen = torch.Generator(device=features.device).manual_seed(seed) if seed is not None else None
            hyps = [[h] for h in sequential_search(step, state, memory, start_id=v.start_id, end_id=v.end_id,
                                                   max_len=max_len, temperature=temperature if sample else None,
                                                   generator=gen)]
        else:
            hyps = beam_search(step, state, memory, start_id=v.start_id, end_id=v.end_id, pad_id=v.pad_id,
                               max_len=max_len, beam_size=beam_size, length_penalty=length_penalty,
                               num_results=max(num_results, min(beam_size, 5)))
        return [self._result(h[:num_results] if num_results > 1 else h) for h in hyps]

    def _result(self, hyps: list[Hypothesis]) -> CaptionResult:
        best = hyps[0]
        grid = self.encoder.grid_size
        words = [self.vocab.words[i] for i in best.token_ids]
        attention = best.attention.view(len(words), grid, grid)
        alternatives = [(" ".join(self.vocab.words[i] for i in h.token_ids), h.log_prob) for h in hyps]
        return CaptionResult(" ".join(words), words, best.log_prob, attention, alternatives)

    # ---- persistence -----------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Weights worth saving: all of them except a frozen pretrained encoder (rebuilt on load)."""
        state = self.state_dict()
        if self.encoder.frozen and self._encoder_is_pretrained:
            state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        return state

    def save(self, folder: str | Path, extra: dict | None = None, extra_files: dict[str, bytes] | None = None) -> Path:
        """`extra`: more keys for config.json; `extra_files`: more files written in the same atomic rename."""
        config = {"format": FORMAT, "model": self.config.to_dict(),
                  "encoder_weights": "pretrained" if self._encoder_is_pretrained else "saved", **(extra or {})}
        return ckpt.save_checkpoint(folder, config, self.vocab.to_json(), self.trainable_state(), extra_files)


def resolve_checkpoint(path: str | os.PathLike, bundled_dir: Path = BUNDLED_DIR) -> Path:
    """A checkpoint folder, a run folder (its best, else latest checkpoint), or a bundled model's name."""
    path = ckpt.recover(Path(path))
    if not path.exists() and (bundled_dir / str(path)).exists():
        path = bundled_dir / str(path)
    if not path.exists():
        names = sorted(p.name for p in bundled_dir.iterdir() if p.is_dir()) if bundled_dir.is_dir() else []
        raise ckpt.CheckpointError(f"{path}: no such checkpoint folder or bundled model "
                                   f"(bundled: {', '.join(names) or 'none'})")
    if path.is_file():
        if path.name == ckpt.WEIGHTS:
            return path.parent
        raise ckpt.CheckpointError(f"{path}: a checkpoint is a folder with {ckpt.CONFIG}, {ckpt.VOCAB} and "
                                   f"{ckpt.WEIGHTS}, not a single file")
    if ckpt.is_checkpoint(path):
        return path
    for candidate in ("best", "last"):
        if ckpt.is_checkpoint(ckpt.recover(path / candidate)):
            return path / candidate
    raise ckpt.CheckpointError(f"{path}: not a checkpoint folder (needs {ckpt.CONFIG}, {ckpt.VOCAB}, "
                               f"{ckpt.WEIGHTS}) and holds no best/ or last/ checkpoint")


def load_captioner(path: str | os.PathLike, device: str | torch.device = "cpu", *,
                   pretrained_encoder: bool = True) -> Captioner:
    """Rebuild any captioner variant from its folder; never unpickles anything."""
    folder = resolve_checkpoint(path)
    meta = ckpt.read_config(folder)
    if meta.get("format") != FORMAT:
        raise ckpt.CheckpointError(f"{folder}: not a captioning checkpoint (format {meta.get('format')!r})")
    try:
        config = ModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ckpt.CheckpointError(f"{folder / ckpt.CONFIG}: invalid model config ({exc})") from None
    vocab = Vocabulary.load(folder / ckpt.VOCAB)
    encoder_saved = meta.get("encoder_weights") == "saved"
    try:
        model = Captioner(config, vocab, pretrained_encoder=pretrained_encoder and not encoder_saved)
    except (TypeError, ValueError) as exc:  # e.g. an unknown encoder or a non-integer size in config.json
        raise ckpt.CheckpointError(f"{folder / ckpt.CONFIG}: cannot build the model it describes ({exc})") from None
    model._encoder_is_pretrained = not encoder_saved
    tensors = ckpt.read_weights(folder)
    optional = () if encoder_saved or not model.encoder.frozen else ("encoder.",)
    ckpt.load_into(model, tensors, folder, optional_prefixes=optional)
    return model.to(device).eval()
