"""Typed model configuration, saved as `config.json` beside the weights so a loader rebuilds the
exact model from the checkpoint folder alone. In Python one flat dataclass (every decoder kind reads its keys
from it); in config.json {"encoder": {"name", ...}, "decoder": {"kind", ...}}, the flat layout of checkpoints
saved before that still read.

The choices are `str` enums: a member equals its string ("soft" == AttentionMode.SOFT), so JSON and
YAML files written before keep loading, and `asdict` / `json.dumps` write the same strings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any, ClassVar

from .decoders import CAPTION, DEFAULT_DECODER, decoder_class


class Choice(str, Enum):
    """A string option with a fixed set of values; prints and formats as its value."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class AttentionMode(Choice):
    """Soft: z_t = sum_i alpha_ti a_i (deterministic). Hard: z_t = a_s, s ~ Multinoulli(alpha_t) (REINFORCE)."""

    SOFT = "soft"
    HARD = "hard"


class HardInference(Choice):
    """How a hard-attention model attends at test time: the expected context, or the likeliest location."""

    EXPECTATION = "expectation"
    ARGMAX = "argmax"


class CellKind(Choice):
    LSTM = "lstm"
    GRU = "gru"
    RNN = "rnn"


ATTENTION_KINDS = tuple(m.value for m in AttentionMode)
HARD_INFERENCE = tuple(m.value for m in HardInference)
CELL_KINDS = tuple(m.value for m in CellKind)


def _register_yaml() -> None:
    """Let `yaml.safe_dump` write a `Choice` as its plain string (run configs are YAML)."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - yaml is a dependency; without it nothing writes YAML
        return
    yaml.SafeDumper.add_multi_representer(Choice, lambda dumper, value: dumper.represent_str(value.value))


_register_yaml()


def shown(value: Any, limit: int = 80) -> str:
    """repr(value), cut in the middle past `limit` characters: a hostile value never floods an error line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit // 2]}...{text[-limit // 2:]}"


def _choice(kind: type[Choice], value: Any, name: str) -> Choice:
    try:
        return kind(value)
    except ValueError:
        valid = tuple(m.value for m in kind)
        raise ValueError(f"{name} must be one of {valid}, got {shown(value)}") from None


# What the architecture could sensibly be: a config.json beyond these is a typo or hostile, and is refused
# before anything is allocated (hidden_dim 20000 would ask for gigabytes). Inclusive bounds.
INT_LIMITS = {"image_size": (16, 1024), "grid_size": (1, 64), "fine_tune_blocks": (0, 64), "num_layers": (1, 4),
              "embed_dim": (1, 4096), "hidden_dim": (1, 4096), "attention_dim": (1, 4096), "max_len": (1, 200)}
FLOAT_LIMITS = {"dropout": (0.0, 0.99), "doubly_stochastic": (0.0, 1000.0)}
REINFORCE_LIMITS = {"samples": (1, 64), "reward_weight": (0.0, 1000.0), "entropy_weight": (0.0, 1000.0),
                    "baseline_decay": (0.0, 1.0), "soft_probability": (0.0, 1.0)}


def _checked(name: str, value: Any, kind: type, bounds: tuple | None) -> Any:
    """`value` if it is a `kind` (an int is a float too; a bool is neither) within `bounds`, else one ValueError."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = isinstance(value, bool) if kind is bool else numeric and (kind is float or isinstance(value, int))
    if not ok:
        raise ValueError(f"{name} must be {'true or false' if kind is bool else kind.__name__}, got {shown(value)}")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} must be between {bounds[0]} and {bounds[1]}, got {shown(value)}")
    return float(value) if kind is float else value


@dataclass
class ReinforceConfig:
    """Monte-Carlo REINFORCE for hard attention (Xu et al. 2015, eq. 12)."""

    samples: int = 2            # N attention sequences sampled per caption
    reward_weight: float = 1.0  # lambda_r
    entropy_weight: float = 0.01  # lambda_e
    baseline_decay: float = 0.9  # b_k = 0.9 b_{k-1} + 0.1 log p(y|s, a)
    soft_probability: float = 0.5  # chance per step of using the expected context instead of a sample

    def __post_init__(self) -> None:
        for name, bounds in REINFORCE_LIMITS.items():
            kind = int if name == "samples" else float
            setattr(self, name, _checked(f"reinforce.{name}", getattr(self, name), kind, bounds))


@dataclass
class ModelConfig:
    decoder_task: ClassVar[str] = CAPTION  # which registry `decoder` names a kind of
    encoder: str = "efficientnet_lite0"
    decoder: str = DEFAULT_DECODER      # a registered decoder kind (`captioning.decoders`)
    image_size: int | None = None       # None: the encoder's own default
    grid_size: int | None = None        # None: the encoder's natural conv grid
    fine_tune_blocks: int = 0           # 0 keeps the encoder frozen
    attention: AttentionMode = AttentionMode.SOFT
    hard_inference: HardInference = HardInference.EXPECTATION  # how a hard model attends at test time
    cell: CellKind = CellKind.LSTM
    num_layers: int = 1
    embed_dim: int = 512
    hidden_dim: int = 512
    attention_dim: int = 512
    dropout: float = 0.5
    deep_output: bool = True            # p(y_t) from E y_{t-1} + L_h h_t + L_z z_t, as in the paper
    gate: bool = True                   # beta_t = sigmoid(f_beta(h_{t-1})) scales the context
    max_len: int = 20                   # default decoding length
    doubly_stochastic: float = 1.0      # lambda in lambda * sum_i (1 - sum_t alpha_ti)^2
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)

    def __post_init__(self) -> None:
        if isinstance(self.reinforce, dict):
            self.reinforce = ReinforceConfig(**self.reinforce)
        if not isinstance(self.reinforce, ReinforceConfig):
            raise ValueError(f"reinforce must be a mapping, got {shown(self.reinforce)}")
        if not isinstance(self.encoder, str):
            raise ValueError(f"encoder must be a name, got {shown(self.encoder)}")
        if not isinstance(self.decoder, str):
            raise ValueError(f"decoder must be a name, got {shown(self.decoder)}")
        if self.decoder != DEFAULT_DECODER:  # another kind: it must be registered (the default needs no lookup)
            decoder_class(self.decoder, self.decoder_task)
        for name, bounds in INT_LIMITS.items():
            value = getattr(self, name)
            if value is not None or name not in ("image_size", "grid_size"):
                _checked(name, value, int, bounds)
        for name, bounds in FLOAT_LIMITS.items():
            setattr(self, name, _checked(name, getattr(self, name), float, bounds))
        for name in ("deep_output", "gate"):
            _checked(name, getattr(self, name), bool, None)
        self.attention = _choice(AttentionMode, self.attention, "attention")
        self.hard_inference = _choice(HardInference, self.hard_inference, "hard_inference")
        self.cell = _choice(CellKind, self.cell, "cell")

    def decoder_parameters(self, vocab_size: int, channels: int = 2048) -> int:
        """About how many parameters the decoder has (an upper bound for any registered encoder's `channels`):
        what a loader checks against free memory before allocating anything. The decoder kind's own estimate."""
        return decoder_class(self.decoder, self.decoder_task).estimate_parameters(self, vocab_size, channels)

    def to_dict(self) -> dict[str, Any]:
        """config.json's layout: {"encoder": {"name", sizes, fine-tuning}, "decoder": {"kind", and every key the
        decoder reads}}, so a decoder kind's own keys sit beside its name."""
        flat = asdict(self)
        encoder = {key: flat.pop(name) for key, name in ENCODER_SECTION.items()}
        return {"encoder": encoder, "decoder": {"kind": flat.pop("decoder"), **flat}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """From config.json's nested layout, or the flat one of checkpoints and run configs written before it."""
        if not isinstance(data, dict):
            raise ValueError(f"the model config must be a mapping, got {shown(data)}")
        names = {f.name for f in fields(cls)}
        nested = isinstance(data.get("encoder"), dict) or isinstance(data.get("decoder"), dict)
        flat = _flattened(data, names) if nested else dict(data)
        unknown = set(flat) - names
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**flat)


ENCODER_SECTION = {"name": "encoder", "image_size": "image_size", "grid_size": "grid_size",
                   "fine_tune_blocks": "fine_tune_blocks"}  # config.json's "encoder" keys -> ModelConfig fields


def _flattened(data: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """The nested layout as the fields `names`; a key in the wrong section is named, not guessed."""
    extra = set(data) - {"encoder", "decoder"}
    if extra:
        raise ValueError(f"unknown model config keys: {', '.join(sorted(extra))} (expected encoder and decoder)")
    encoder, decoder = data.get("encoder", {}), data.get("decoder", {})
    for section, value in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(value, dict):
            raise ValueError(f"model.{section} must be a mapping, got {shown(value)}")
    decoder_keys = names - set(ENCODER_SECTION.values()) - {"decoder"} | {"kind"}
    for section, value, known in (("encoder", encoder, set(ENCODER_SECTION)), ("decoder", decoder, decoder_keys)):
        if set(value) - known:
            raise ValueError(f"unknown {section} config keys: {', '.join(sorted(set(value) - known))}")
    flat = {name: encoder[key] for key, name in ENCODER_SECTION.items() if key in encoder}
    flat.update({("decoder" if key == "kind" else key): value for key, value in decoder.items()})
    return flat


def set_in_layout(model: dict[str, Any], **values: Any) -> None:
    """Set ModelConfig fields in a config.json "model" section of the nested layout, each where that layout keeps
    it (for tools that edit a checkpoint's config on purpose: the hostile-input bench, tests)."""
    by_field = {name: key for key, name in ENCODER_SECTION.items()}
    for name, value in values.items():
        if name in by_field:
            model["encoder"][by_field[name]] = value
        else:
            model["decoder"]["kind" if name == "decoder" else name] = value


# Help of the model keys as training flags (`captioning train`, `vqa train`).
MODEL_HELP = {
    "encoder": "image encoder",
    "decoder": "decoder kind, one registered in captioning/decoders (default: show_attend_tell, the paper's)",
    "image_size": "encoder input size in pixels (default: the encoder's own)",
    "grid_size": "attention grid side (default: the encoder's natural conv grid)",
    "fine_tune_blocks": "top encoder blocks to train (0: frozen encoder, cached features)",
    "attention": "soft (deterministic) or hard (stochastic, REINFORCE)",
    "hard_inference": "how hard attention attends at test time",
    "cell": "recurrent cell",
    "num_layers": "recurrent layers",
    "embed_dim": "word embedding size",
    "hidden_dim": "recurrent state size",
    "attention_dim": "attention MLP size",
    "dropout": "dropout before the output layer",
    "deep_output": "deep output layer (paper eq. 7)",
    "gate": "gating scalar beta on the context",
    "max_len": "longest caption in words (training truncation and decoding)",
    "doubly_stochastic": "lambda of the doubly stochastic attention penalty",
    **{f"reinforce_{k}": f"hard attention REINFORCE: {k.replace('_', ' ')}"
       for k in ReinforceConfig.__dataclass_fields__},
}
