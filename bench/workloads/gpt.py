"""GPT language-model tasks: a nanoGPT-style decoder and the workloads that train it.

The implementation of the tasks declared in `bench.tasks.gpt`, where the configuration (`GPTConfig`,
`SIZES`), the FLOP formulas, the options and the entries live.

The model (read top to bottom): token + position embeddings -> `n_layer` pre-LayerNorm `Block`s of
causal self-attention and an MLP -> final LayerNorm -> `lm_head`, whose weight is the token embedding's
(weight tying). No biases anywhere. Sizes are data (`SIZES`), not subclasses.

For optimizers that treat matrices differently (Muon, SOAP...), `LanguageModelTask.param_roles` says:
the embeddings are `nn.Embedding` (`transformer.wte`, `transformer.wpe`) and the output layer is the
`nn.Linear` named `lm_head`; its weight *is* `transformer.wte.weight`, so `model.named_parameters()`
lists it once, under the embedding's name, which is then both head and embedding. Every other 2-D
parameter is a hidden matrix.

Tasks: `pydocs_gpt_tiny` (`build_pydocs`) and the `c4_gpt_*` tasks (`build_c4`); metric `val/loss`.

Batches are LongTensors of shape (batch, block_size + 1): inputs `[:, :-1]`, targets `[:, 1:]`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from bench.tasks.base import ParamRoles
from bench.tasks.gpt import GPTConfig, gpt_config
from bench.workloads import parameter_names, text_data

# --------------------------------------------------------------------------------------------------
# The model


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

    def param_roles(self, model: nn.Module) -> ParamRoles:
        """`lm_head.weight` is `transformer.wte.weight` (tied): one tensor, head and embedding at once."""
        assert isinstance(model, GPT)
        wte, wpe = model.transformer.wte, model.transformer.wpe
        return ParamRoles(
            head=parameter_names(model, model.lm_head), embedding=parameter_names(model, wte, wpe)
        )

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


def _window_count(opts: Mapping[str, Any]) -> int:
    return opts["val_tokens"] // opts["block_size"]  # >= 1: the schema checks val_tokens >= block_size


def build_pydocs(opts: Mapping[str, Any], seed: int, data_root: Path, *, name: str) -> LanguageModelTask:
    """Train on the first (1 - val_fraction) of the tokens of `pydoc_data.topics`, validate on the
    first `val_tokens` of the rest (non-overlapping windows). `opts`: the validated
    `bench.tasks.gpt.PydocsOptions` as a dict, plus `batch_size`."""
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
        config=gpt_config(opts, tokenizer.vocab_size),
        train_data=text_data.Windows(tokens[:split], window),
        val_windows=torch.stack([val[i] for i in range(n_val)]),
        batch_size=opts["batch_size"],
        seed=seed,
        num_workers=int(opts["num_workers"]),
        origin="pydoc_data.topics",
    )


@functools.cache
def _pydoc_tokens(tokenizer: str) -> torch.Tensor:
    ids = text_data.load_tokenizer(tokenizer).encode_batch([text_data.pydoc_text()])[0]
    return torch.tensor(ids, dtype=torch.long)


def build_c4(opts: Mapping[str, Any], seed: int, data_root: Path, *, name: str) -> LanguageModelTask:
    """Training windows from C4's train split, validation on the first `val_tokens` tokens of C4's
    validation split, or, for local files without one, of the first documents, which training then
    skips. `opts`: the validated `bench.tasks.gpt.C4Options` as a dict, plus `batch_size`.

    Training reads the windows packed once into the `datasets` cache (`text_data.packed`: the first
    `train_tokens` tokens, or every document of local files), in a permutation seeded with `seed`;
    with option `stream`, it tokenizes while it trains (`text_data.PackedStream`, the document order
    shuffled with `seed` through buffers of `shuffle_buffer`). Validation is always packed once."""
    tokenizer = text_data.load_tokenizer(opts["tokenizer"])
    corpus = text_data.open_corpus(
        dataset=opts["dataset"],
        config=opts["dataset_config"],
        data_files=opts["data_files"],
        data_root=Path(data_root),
    )
    if not opts["stream"] and opts["train_tokens"] is None and not corpus.train.files:
        raise ValueError(
            f"task {name}: packing {corpus.origin} once needs a size: set options.train_tokens (the "
            "training tokens to pack, e.g. the suite's token budget) or options.stream: true"
        )
    window = int(opts["block_size"]) + 1
    val_windows, held_out_docs = _validation(corpus, opts)
    if corpus.validation is not None:
        held_out_docs = 0
    if opts["stream"]:
        train_docs = corpus.train.open().skip(held_out_docs)
        buffer = int(opts["shuffle_buffer"])
        if buffer > 1:
            train_docs = train_docs.shuffle(seed=seed, buffer_size=buffer)
        train_data: Any = text_data.PackedStream(
            train_docs, tokenizer, window, seed, text_field=opts["text_field"], shuffle_windows=buffer
        )
    else:
        packed = text_data.packed(
            corpus.train,
            opts["tokenizer"],
            window,
            text_field=opts["text_field"],
            skip_docs=held_out_docs,
            max_windows=None if opts["train_tokens"] is None else -(-int(opts["train_tokens"]) // window),
        )
        train_data = text_data.PackedWindows(packed)
    return LanguageModelTask(
        config=gpt_config(opts, tokenizer.vocab_size),
        train_data=train_data,
        val_windows=val_windows,
        batch_size=opts["batch_size"],
        seed=seed,
        num_workers=int(opts["num_workers"]),
        origin=corpus.origin,
    )


def _validation(corpus: text_data.Corpus, opts: Mapping[str, Any]) -> tuple[torch.Tensor, int]:
    """The validation windows (packed once, `text_data.packed`) and the number of documents they took
    from the start of their split."""
    n = _window_count(opts)
    window = int(opts["block_size"]) + 1
    docs = corpus.validation if corpus.validation is not None else corpus.train
    packed = text_data.packed(docs, opts["tokenizer"], window, text_field=opts["text_field"], max_windows=n)
    if len(packed) < n:
        raise ValueError(
            f"validation needs {n} windows of {window} tokens, the held-out text gave {len(packed)}"
        )
    rows = packed.with_format("numpy")[:n]
    return torch.from_numpy(rows["ids"].astype(np.int64)), int(rows["docs"][-1])
