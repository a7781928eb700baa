"""GPT language-model tasks: a nanoGPT-style decoder and the workloads that train it.

The model (read top to bottom): token + position embeddings -> `n_layer` pre-LayerNorm `Block`s of
causal self-attention and an MLP -> final LayerNorm -> `lm_head`, whose weight is the token embedding's
(weight tying). No biases anywhere. Sizes are data (`SIZES`), not subclasses.

For optimizers that treat matrices differently (Muon, SOAP...): the embeddings are `nn.Embedding`
(`transformer.wte`, `transformer.wpe`) and the output layer is the `nn.Linear` named `lm_head`; its weight
*is* `transformer.wte.weight`, so `model.parameters()` lists it once, under the embedding. Every other
2-D parameter is a hidden matrix.

Tasks (metric `val/loss` in nats per token, lower is better; the runner adds `val/ppl` = exp(val/loss)):

    pydocs_gpt_tiny   bytes of CPython's embedded docs (offline), CPU, ~150 steps
    c4_gpt_tiny       C4 English as bytes, CPU
    c4_gpt_small      C4 English, GPT-2 BPE, 6 layers x 384, one GPU
    c4_gpt_124m       C4 English, GPT-2 BPE, GPT-2 small (124M)
    c4_gpt_350m       C4 English, GPT-2 BPE, GPT-2 medium (350M)

Batches are LongTensors of shape (batch, block_size + 1): inputs `[:, :-1]`, targets `[:, 1:]`.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from bench.registry import TASKS
from bench.tasks import text_data
from bench.tasks.base import TaskEntry

# --------------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64: faster matmuls, see padded_vocab
    block_size: int = 1024  # context length in tokens
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # single-epoch pretraining doesn't need it

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if min(self.vocab_size, self.block_size, self.n_layer, self.n_head) < 1:
            raise ValueError(f"GPT sizes must be positive, got {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=128),  # ~0.8M params, CPU
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=512),  # ~11M + embeddings, one GPU
    "124m": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024),  # GPT-2 small
    "350m": dict(n_layer=24, n_head=16, n_embd=1024, block_size=1024),  # GPT-2 medium
}


def padded_vocab(vocab_size: int) -> int:
    """Round a BPE vocabulary up to a multiple of 64 (nanoGPT's 50257 -> 50304). The extra ids are never
    targets, so the loss is unchanged; byte-level vocabularies (<= 256) stay as they are."""
    return vocab_size if vocab_size <= 256 else 64 * math.ceil(vocab_size / 64)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.dropout = cfg.n_head, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # each (B, T, C)
        q, k, v = (
            t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v)
        )  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C) -> (B, T, C)
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),  # token embedding
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),  # learned position embedding
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer)),
                ln_f=nn.LayerNorm(cfg.n_embd, bias=False),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # weight tying (Press & Wolf 2017)
        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so the residual stream's variance
        # does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size)."""
        B, T = idx.shape
        if self.config.block_size < T:
            raise ValueError(f"sequence of length {T} is longer than block_size {self.config.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, V)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; `non_embedding` leaves out the position embedding (the token embedding is
        counted because, tied, it is also the output layer's matmul)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if non_embedding else n


def num_params(cfg: GPTConfig, non_embedding: bool = True) -> int:
    """`GPT(cfg).num_params(non_embedding)` without building the model (tests check they agree)."""
    d = cfg.n_embd
    per_block = 2 * d + 3 * d * d + d * d + 2 * 4 * d * d  # two LayerNorms, attention (qkv, proj), MLP
    n = cfg.n_layer * per_block + d + cfg.vocab_size * d  # + final LayerNorm + (tied) token embedding
    return n if non_embedding else n + cfg.block_size * d


def flops_per_token(cfg: GPTConfig) -> float:
    """Training FLOPs per token (forward + backward), PaLM appendix B: 6 N + 12 L d T, with N the
    parameters without the position embedding; the attention term counts the full T x T scores."""
    return 6.0 * num_params(cfg) + 12.0 * cfg.n_layer * cfg.n_embd * cfg.block_size


# --------------------------------------------------------------------------------------------------
# The task


@dataclass
class LanguageModelTask:
    """One built LM task (see `bench.tasks.base.Task`). Train windows come from `train_data`
    (shuffled by the loader when map-style), validation from the fixed `val_windows`."""

    config: GPTConfig
    train_data: Dataset | IterableDataset
    val_windows: torch.Tensor  # (n_windows, block_size + 1)
    batch_size: int
    seed: int
    num_workers: int = 0
    origin: str = ""  # where the text came from

    def build_model(self) -> nn.Module:
        return GPT(self.config)

    def train_loader(self) -> DataLoader:
        shuffle = not isinstance(self.train_data, IterableDataset)
        return text_data.seeded_loader(
            self.train_data, self.batch_size, self.seed, shuffle=shuffle, num_workers=self.num_workers
        )

    def val_loader(self) -> DataLoader:
        return DataLoader(self.val_windows, batch_size=self.batch_size, shuffle=False)

    def training_loss(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        x, y = batch[:, :-1], batch[:, 1:]  # (B, T) each
        logits = model(x)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())

    def validation_sums(self, model: nn.Module, batch: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
        x, y = batch[:, :-1], batch[:, 1:]
        logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum")
        return {"loss": loss}, y.numel()


MODEL_OPTIONS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")  # the task options that shape GPT
RESERVED = ("batch_size",)  # passed by the runner next to the suite's options
# The options that decide which validation windows a C4 task reads (the key of their per-process cache).
VALIDATION_KEYS = (
    "dataset",
    "dataset_config",
    "data_files",
    "text_field",
    "tokenizer",
    "block_size",
    "val_tokens",
)


def _resolve(name: str, defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(defaults) - set(RESERVED))
    if unknown:
        raise ValueError(f"task {name}: unknown option(s) {unknown}; options are {sorted(defaults)}")
    return {**defaults, **options}


def _model_config(opts: Mapping[str, Any], vocab_size: int) -> GPTConfig:
    return GPTConfig(vocab_size=padded_vocab(vocab_size), **{k: opts[k] for k in MODEL_OPTIONS})


def _window_count(opts: Mapping[str, Any]) -> int:
    n = int(opts["val_tokens"]) // int(opts["block_size"])
    if n < 1:
        raise ValueError(
            f"val_tokens ({opts['val_tokens']}) must be at least block_size ({opts['block_size']})"
        )
    return n


def build_pydocs(
    options: Mapping[str, Any], seed: int, data_root: Path, *, name: str, defaults: Mapping[str, Any]
) -> LanguageModelTask:
    """Train on the first (1 - val_fraction) of the tokens of `pydoc_data.topics`, validate on the
    first `val_tokens` of the rest (non-overlapping windows)."""
    opts = _resolve(name, defaults, options)
    tokenizer = text_data.load_tokenizer(opts["tokenizer"])
    tokens = _pydoc_tokens(opts["tokenizer"])
    split = int(len(tokens) * (1.0 - float(opts["val_fraction"])))
    window = int(opts["block_size"]) + 1
    val = text_data.Windows(tokens[split:], window)
    n_val = _window_count(opts)
    if n_val > len(val):
        raise ValueError(
            f"task {name}: val_tokens {opts['val_tokens']} asks for {n_val} windows, the held-out "
            f"{opts['val_fraction']:.0%} of the text has {len(val)}"
        )
    return LanguageModelTask(
        config=_model_config(opts, tokenizer.vocab_size),
        train_data=text_data.Windows(tokens[:split], window),
        val_windows=torch.stack([val[i] for i in range(n_val)]),
        batch_size=int(options.get("batch_size", defaults["batch_size"])),
        seed=seed,
        num_workers=int(opts["num_workers"]),
        origin="pydoc_data.topics",
    )


@functools.cache
def _pydoc_tokens(tokenizer: str) -> torch.Tensor:
    ids = text_data.load_tokenizer(tokenizer).encode_batch([text_data.pydoc_text()])[0]
    return torch.tensor(ids, dtype=torch.long)


def build_c4(
    options: Mapping[str, Any], seed: int, data_root: Path, *, name: str, defaults: Mapping[str, Any]
) -> LanguageModelTask:
    """Training windows streamed from C4's train split (document order shuffled with `seed`), validation
    on the first `val_tokens` tokens of C4's validation split, or, for local files without one, of the
    first documents, which training then skips."""
    opts = _resolve(name, defaults, options)
    tokenizer = text_data.load_tokenizer(opts["tokenizer"])
    corpus = text_data.open_corpus(
        dataset=opts["dataset"],
        config=opts["dataset_config"],
        data_files=opts["data_files"],
        data_root=Path(data_root),
    )
    window = int(opts["block_size"]) + 1
    val_windows, held_out_docs = _validation(corpus, opts, data_root)
    train_docs = corpus.train if corpus.validation is not None else corpus.train.skip(held_out_docs)
    buffer = int(opts["shuffle_buffer"])
    if buffer > 1:
        train_docs = train_docs.shuffle(seed=seed, buffer_size=buffer)
    stream = text_data.PackedStream(
        train_docs, tokenizer, window, seed, text_field=opts["text_field"], shuffle_windows=buffer
    )
    return LanguageModelTask(
        config=_model_config(opts, tokenizer.vocab_size),
        train_data=stream,
        val_windows=val_windows,
        batch_size=int(options.get("batch_size", defaults["batch_size"])),
        seed=seed,
        num_workers=int(opts["num_workers"]),
        origin=corpus.origin,
    )


def _validation(
    corpus: text_data.Corpus, opts: Mapping[str, Any], data_root: Path
) -> tuple[torch.Tensor, int]:
    """The validation windows and the number of held-out training documents, cached per process (every
    trial of a study reads the same ones)."""
    key = json.dumps(
        {k: opts[k] for k in VALIDATION_KEYS} | {"data_root": str(data_root)},
        sort_keys=True,
        default=lambda o: dict(o) if isinstance(o, Mapping) else repr(o),
    )
    if key not in _VALIDATION_CACHE:
        docs = corpus.validation if corpus.validation is not None else corpus.train
        texts = (row[opts["text_field"]] for row in docs)
        tokenizer = text_data.load_tokenizer(opts["tokenizer"])
        windows, n_docs = text_data.take_windows(
            texts, tokenizer, int(opts["block_size"]) + 1, _window_count(opts)
        )
        _VALIDATION_CACHE[key] = (windows, n_docs if corpus.validation is None else 0)
    return _VALIDATION_CACHE[key]


_VALIDATION_CACHE: dict[str, tuple[torch.Tensor, int]] = {}


# --------------------------------------------------------------------------------------------------
# Registry entries


def _entry(
    name: str,
    size: str,
    corpus: str,
    *,
    description: str,
    target: float | None,
    steps: int,
    batch_size: int,
    eval_every: int,
    tokenizer: str,
    val_tokens: int,
    requires_gpu: bool = False,
    version: int = 1,
) -> TaskEntry:
    options: dict[str, Any] = dict(
        SIZES[size], dropout=0.0, tokenizer=tokenizer, val_tokens=val_tokens, num_workers=0
    )
    if corpus == "pydocs":
        options |= dict(val_fraction=0.1)  # the last 10% of the text is held out
        builder: Any = build_pydocs
    else:
        options |= dict(
            dataset="allenai/c4",  # hub name; its last part is also the local folder: <data_root>/c4/
            dataset_config="en",
            data_files=None,  # local json/jsonl/parquet/txt: a path, glob, list, or {train:, validation:}
            text_field="text",
            shuffle_buffer=1024,  # documents, then packed windows, shuffled through buffers this big
        )
        builder = build_c4
    cfg = replace(
        GPTConfig(), **SIZES[size], vocab_size=padded_vocab(text_data.vocab_size_of(tokenizer) or 50257)
    )
    tokens_per_step = batch_size * cfg.block_size
    return TaskEntry(
        name=name,
        family="gpt",
        size=size,
        description=description,
        metric="val/loss",
        mode="min",
        target=target,
        steps=steps,
        batch_size=batch_size,
        version=version,
        build=functools.partial(builder, name=name, defaults={**options, "batch_size": batch_size}),
        options=options,
        eval_every=eval_every,
        metrics={"val/loss": "min", "val/ppl": "min"},
        flops_per_step=flops_per_token(cfg) * tokens_per_step,
        tokens_per_step=tokens_per_step,
        requires_gpu=requires_gpu,
    )


def steps_for(tokens: float, batch_size: int, block_size: int) -> int:
    """Optimizer steps that see `tokens` training tokens."""
    return math.ceil(tokens / (batch_size * block_size))


@TASKS.register("pydocs_gpt_tiny")
def pydocs_gpt_tiny() -> TaskEntry:
    return _entry(
        "pydocs_gpt_tiny",
        "tiny",
        "pydocs",
        description="Byte-level GPT (4x128) on CPython's embedded documentation prose; CPU, offline.",
        # AdamW (lr 2e-3, cosine, 5% warmup) measured: 2.50 / 2.36 / 2.335 at steps 50 / 100 / 150, so a
        # well-tuned optimizer reaches 2.4 at the second evaluation and a poorly tuned one not at all.
        target=2.4,
        steps=150,
        batch_size=16,
        eval_every=50,
        tokenizer="bytes",
        val_tokens=32768,
    )


@TASKS.register("c4_gpt_tiny")
def c4_gpt_tiny() -> TaskEntry:
    return _entry(
        "c4_gpt_tiny",
        "tiny",
        "c4",
        description="Byte-level GPT (4x128) on C4 English; CPU-sized.",
        target=2.5,  # provisional (no C4 here): calibrate with the AdamW baseline, then bump version
        steps=300,
        batch_size=16,
        eval_every=100,
        tokenizer="bytes",
        val_tokens=32768,
    )


@TASKS.register("c4_gpt_small")
def c4_gpt_small() -> TaskEntry:
    return _entry(
        "c4_gpt_small",
        "small",
        "c4",
        description="GPT (6x384, context 512, GPT-2 BPE) on C4 English, 200M tokens; one GPU.",
        target=4.0,  # provisional
        steps=steps_for(200e6, 32, 512),
        batch_size=32,
        eval_every=1000,
        tokenizer="gpt2",
        val_tokens=1_048_576,
        requires_gpu=True,
    )


@TASKS.register("c4_gpt_124m")
def c4_gpt_124m() -> TaskEntry:
    return _entry(
        "c4_gpt_124m",
        "124m",
        "c4",
        description="GPT-2 small (124M, GPT-2 BPE) on C4 English, 2.5B tokens (20 tokens/parameter).",
        target=3.45,  # provisional
        steps=steps_for(2.5e9, 32, 1024),
        batch_size=32,  # per micro-batch; suites raise the batch with trainer.accumulate_grad_batches
        eval_every=5000,
        tokenizer="gpt2",
        val_tokens=10_485_760,
        requires_gpu=True,
    )


@TASKS.register("c4_gpt_350m")
def c4_gpt_350m() -> TaskEntry:
    return _entry(
        "c4_gpt_350m",
        "350m",
        "c4",
        description="GPT-2 medium (350M, GPT-2 BPE) on C4 English, 7B tokens (20 tokens/parameter).",
        target=3.15,  # provisional
        steps=steps_for(7e9, 16, 1024),
        batch_size=16,  # per micro-batch; suites raise the batch with trainer.accumulate_grad_batches
        eval_every=20000,
        tokenizer="gpt2",
        val_tokens=10_485_760,
        requires_gpu=True,
    )
