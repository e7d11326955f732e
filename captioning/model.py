"""The captioner users hold: encoder + decoder + vocabulary, with `caption(images)` as its face."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .config import ModelConfig
from .decoder import DecoderOutput, ShowAttendTellDecoder
from .encoder_decoder import EncoderDecoder
from .encoder_decoder import resolve_checkpoint as resolve_folder
from .search import DEFAULT_BEAM_SIZE, Hypothesis

BUNDLED_DIR = Path(__file__).parent / "bundled"
FORMAT = "showtell-captioner/1"


@dataclass
class CaptionResult:
    text: str
    tokens: list[str]
    log_prob: float
    attention: torch.Tensor                 # (words, H, W), one map per word in `tokens`
    alternatives: list[tuple[str, float]] = field(default_factory=list)  # other beams: (text, log-prob)


class Captioner(EncoderDecoder):
    format, kind = FORMAT, "captioning"
    config_type, decoder_type, bundled_dir = ModelConfig, ShowAttendTellDecoder, BUNDLED_DIR
    config: ModelConfig
    decoder: ShowAttendTellDecoder

    def forward(self, pixels: torch.Tensor, captions: torch.Tensor) -> DecoderOutput:
        """Training from pixels (B, 3, S, S) and padded caption ids (B, T)."""
        return self.decoder(self.encoder(pixels), captions)

    # ---- decoding ------------------------------------------------------------------------
    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image], *, beam_size: int = DEFAULT_BEAM_SIZE, sample: bool = False,
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
    def caption_features(self, features: torch.Tensor, *, beam_size: int = DEFAULT_BEAM_SIZE, sample: bool = False,
                         temperature: float = 1.0, max_len: int | None = None, length_penalty: float = 0.0,
                         num_results: int = 1, seed: int | None = None) -> list[CaptionResult]:
        """Caption from encoder grids (B, P, D), e.g. read from a feature cache."""
        if num_results < 1:
            raise ValueError(f"num_results must be >= 1, got {num_results}")
        features = features.to(self.device, next(self.decoder.parameters()).dtype)
        memory, state = self.decoder.memory(features), self.decoder.init_state(features)
        hyps = self.decode(state, memory, beam_size=beam_size, sample=sample, temperature=temperature,
                           max_len=max_len, length_penalty=length_penalty, seed=seed,
                           num_results=max(num_results, min(beam_size, 5)))
        return [self._result(h[:num_results] if num_results > 1 else h) for h in hyps]

    def _result(self, hyps: list[Hypothesis]) -> CaptionResult:
        best = hyps[0]
        grid = self.encoder.grid_size
        words = [self.vocab.words[i] for i in best.token_ids]
        attention = best.attention.view(len(words), grid, grid)
        alternatives = [(" ".join(self.vocab.words[i] for i in h.token_ids), h.log_prob) for h in hyps]
        return CaptionResult(" ".join(words), words, best.log_prob, attention, alternatives)


def load_captioner(path: str | os.PathLike, device: str | torch.device = "cpu", *,
                   pretrained_encoder: bool = True) -> Captioner:
    """Rebuild any captioner variant from its folder, a run folder or a bundled name; never unpickles anything."""
    return Captioner.load(path, device, pretrained_encoder=pretrained_encoder)


def resolve_checkpoint(path: str | os.PathLike, bundled_dir: Path = BUNDLED_DIR) -> Path:
    """A checkpoint folder, a run folder (its best, else latest checkpoint), or a bundled captioner's name."""
    return resolve_folder(path, bundled_dir)
