"""What the captioner and the question answerer share: a registry encoder, a decoder on its grid,
and their checkpoint folders (safetensors + JSON config + vocabulary; loading never unpickles)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from . import checkpoint as ckpt
from .decoders import decoder_class
from .encoders import create_encoder
from .inference import inference_step
from .lexicon.tags import TABLES, TagTable, tag_table
from .limits import beam_width, check_decoding
from .search import (
    GenerationRules,
    Guidance,
    Hypothesis,
    beam_search,
    generation_step,
    sequential_search,
)
from .vocab import Vocabulary


def resolve_checkpoint(path: str | os.PathLike, bundled_dir: Path) -> Path:
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


PRECHECK_PARAMETERS = 50_000_000  # above this many decoder weights, shapes are compared before the build
                                  # (a meta-device build costs about 1.5 s the first time in a process)

class EncoderDecoder(nn.Module):
    """An encoder from `create_encoder` and a decoder built on its channels; subclasses name their
    config and decoder types, checkpoint format and bundled-model folder."""

    format: ClassVar[str]
    kind: ClassVar[str]                 # for messages: "captioning", "question-answering"
    config_type: ClassVar[Any]          # a dataclass with to_dict / from_dict
    decoder_task: ClassVar[str]         # the decoder registry's task: "caption" or "answer"
    bundled_dir: ClassVar[Path]

    def __init__(self, config: Any, vocab: Vocabulary, *, pretrained_encoder: bool = True):
        super().__init__()
        self.config, self.vocab = config, vocab
        self.encoder = create_encoder(config.encoder, pretrained=pretrained_encoder, grid_size=config.grid_size,
                                      image_size=config.image_size, fine_tune_blocks=config.fine_tune_blocks)
        self.decoder = self.decoder_kind(config)(config, len(vocab), self.encoder.channels)
        self._encoder_is_pretrained = pretrained_encoder
        self.inference, self._step = "fast", None

    def use_inference(self, kind: str) -> EncoderDecoder:
        """Decode through `kind` of the one inference seam (`captioning.inference`): "fast" (the default),
        "plain" (the paper's equations) or "int8" (quantised products, CPU). Returns the model. int8 quantises
        the weights as they are when called: choose it after loading, moving and training."""
        self._step = None if kind == "fast" else inference_step(self.decoder, kind)
        self.inference = kind
        return self

    @classmethod
    def decoder_kind(cls, config: Any) -> type[nn.Module]:
        """The decoder class a model with `config` is built with: the kind it names, from the registry."""
        return decoder_class(config.decoder, cls.decoder_task)

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    @property
    def generation_rules(self) -> GenerationRules:
        """Never <unk>, never <end> first: what `decode` may say (and SCST scores its samples under)."""
        v = self.vocab
        return GenerationRules(never=(v.unk_id,), start_id=v.start_id, end_id=v.end_id)

    @property
    def tag_table(self) -> TagTable | None:
        """The table from the encoder's classifier classes to caption words (None: no classifier, no tags)."""
        labels = self.encoder.head_labels
        return tag_table(labels) if labels in TABLES else None

    def tag_probabilities(self, features: torch.Tensor, temperature: float = 1.0,
                          count_power: float = 0.0) -> torch.Tensor | None:
        """(B, W) probability of each tag word (`tag_table.words`) from the grids (B, P, D): the classifier's
        softmax(logits / temperature), summed over the classes of each word (`TagTable.word_probabilities`).
        None without a classifier."""
        table = self.tag_table
        if table is None:
            return None
        logits = self.encoder.class_logits(features) / temperature
        return table.word_probabilities(logits.softmax(dim=-1), count_power)

    @torch.inference_mode()
    def tag_probabilities_of(self, grids: Callable[[Sequence], torch.Tensor], keys: Sequence, temperature: float,
                             count_power: float, chunk: int = 256) -> torch.Tensor:
        """(N, W) tag word probabilities of many images, `grids(keys[i:i + chunk])` at a time (both products
        calibrate their tags over a training set with it). Call only with a classifier."""
        return torch.cat([self.tag_probabilities(grids(keys[i:i + chunk]).float().to(self.device), temperature,
                                                 count_power).cpu() for i in range(0, len(keys), chunk)])

    def configure(self, meta: dict) -> None:
        """Settings a checkpoint's config.json carries beyond the model (none here; see `Captioner`)."""

    @torch.no_grad()
    def decode(self, state: tuple, memory: Any, *, beam_size: int | None = None, sample: bool = False,
               temperature: float = 1.0, max_len: int | None = None, length_penalty: float = 0.0,
               num_results: int = 1, seed: int | None = None,
               guidance: Sequence[Guidance | None] | None = None) -> list[list[Hypothesis]]:
        """Words from the decoder's `step`, starting at <start> in `state` (one row per image) over `memory`:
        greedy (beam_size 1), sampling (`sample`, softmax(logits / temperature)) or beam search, which
        returns up to `num_results` hypotheses per image (the others one). `guidance` (one per image):
        constrained beam search, also for beam_size 1; sampling ignores it. The one way both products decode."""
        v = self.vocab
        max_len = self.config.max_len if max_len is None else max_len
        beam_size = beam_width(beam_size, sample)
        check_decoding(beam_size=beam_size, max_len=max_len, num_results=num_results, temperature=temperature)
        rules = self.generation_rules
        step, state = generation_step(self._step or self.decoder.step, rules), rules.initial_state(state)
        if sample or (beam_size == 1 and guidance is None):
            device = state[0].device
            gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
            return [[h] for h in sequential_search(step, state, memory, start_id=v.start_id, end_id=v.end_id,
                                                   max_len=max_len, temperature=temperature if sample else None,
                                                   generator=gen)]
        return beam_search(step, state, memory, start_id=v.start_id, end_id=v.end_id, pad_id=v.pad_id,
                           max_len=max_len, beam_size=beam_size, length_penalty=length_penalty,
                           num_results=num_results, guidance=guidance)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Weights worth saving: all of them except a frozen pretrained encoder (rebuilt on load)."""
        state = self.state_dict()
        if self.encoder.frozen and self._encoder_is_pretrained:
            state = {k: v for k, v in state.items() if not k.startswith("encoder.")}
        return state

    def save(self, folder: str | Path, extra: dict | None = None, extra_files: dict[str, bytes] | None = None) -> Path:
        """`extra`: more keys for config.json; `extra_files`: more files written in the same atomic rename."""
        config = {"format": self.format, "model": self.config.to_dict(),
                  "encoder_weights": "pretrained" if self._encoder_is_pretrained else "saved", **(extra or {})}
        return ckpt.save_checkpoint(folder, config, self.vocab.to_json(), self.trainable_state(), extra_files)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu", *,
             pretrained_encoder: bool = True, inference: str = "fast") -> EncoderDecoder:
        """Rebuild a model from its folder, a run folder (best, else last) or a bundled model's name;
        `inference`: how it decodes (`use_inference`)."""
        folder = resolve_checkpoint(path, cls.bundled_dir)
        meta = ckpt.read_config(folder)
        if meta.get("format") != cls.format:
            raise ckpt.CheckpointError(f"{folder}: not a {cls.kind} checkpoint (format {meta.get('format')!r}, "
                                       f"expected {cls.format!r})")
        try:
            config = cls.config_type.from_dict(meta["model"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ckpt.CheckpointError(f"{folder / ckpt.CONFIG}: invalid model config ({exc})") from None
        vocab = Vocabulary.load(folder / ckpt.VOCAB)
        metadata, shapes_found = ckpt.read_header(folder)
        ckpt.check_vocabulary(folder, metadata, vocab)
        ckpt.check_fits_memory(config.decoder_parameters(len(vocab)), folder / ckpt.CONFIG)
        encoder_saved = meta.get("encoder_weights") == "saved"
        if config.decoder_parameters(len(vocab)) > PRECHECK_PARAMETERS:  # costly to build: check shapes first
            shapes = cls._meta_shapes(config, vocab)
            if shapes is not None:
                ckpt.check_shapes(folder, shapes_found, shapes)
        try:
            model = cls(config, vocab, pretrained_encoder=pretrained_encoder and not encoder_saved)
        except (TypeError, ValueError) as exc:  # e.g. an unknown encoder or a non-integer size in config.json
            raise ckpt.CheckpointError(f"{folder / ckpt.CONFIG}: cannot build the model it describes ({exc})"
                                       ) from None
        model._encoder_is_pretrained = not encoder_saved
        try:
            model.configure(meta)
        except (TypeError, ValueError) as exc:
            raise ckpt.CheckpointError(f"{folder / ckpt.CONFIG}: {exc}") from None
        # a classifier head is rebuilt with the pretrained trunk; checkpoints from before heads lack it
        optional = ("encoder.head.",) if encoder_saved or not model.encoder.frozen else ("encoder.",)
        ckpt.load_into(model, ckpt.read_weights(folder), folder, optional_prefixes=optional)
        if model.generates_words:
            model.eval()._check_one_step(folder)
        model = model.eval().to(device)
        return model.use_inference(inference) if model.generates_words else model

    @classmethod
    def _meta_shapes(cls, config: Any, vocab: Vocabulary) -> dict[str, tuple[int, ...]] | None:
        """Every tensor's shape in the model `config` describes, built on the meta device (no memory); None
        when a part cannot be built there (the full build then reports any mismatch)."""
        try:
            with torch.device("meta"):
                model = cls(config, vocab, pretrained_encoder=False)
        except Exception:  # noqa: BLE001 (a precheck only)
            return None
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    @property
    def generates_words(self) -> bool:
        """Whether `decode` can run (a pointing answerer only scores boxes)."""
        return True

    @torch.no_grad()
    def _check_one_step(self, folder: Path) -> None:
        """Finite weights can still be absurd (all multiplied by 1e30): then the first step's logits are not
        finite, and decoding would print <pad>s. Refuse such a checkpoint at load, by name."""
        grid = torch.zeros(1, self.encoder.num_positions, self.encoder.channels,
                           dtype=next(self.decoder.parameters()).dtype)
        start = torch.full((1,), self.vocab.start_id, dtype=torch.long)
        log_probs, _, _ = self.decoder.step(start, self.decoder.init_state(grid), self.decoder.memory(grid))
        if not bool(torch.isfinite(log_probs.float()).any()) or bool(torch.isnan(log_probs).any()):
            raise ckpt.CheckpointError(f"{folder / ckpt.WEIGHTS}: the weights give no finite word scores "
                                       "(values far outside any trained model's)")
