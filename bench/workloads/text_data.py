"""Text for the language-model tasks: tokenizers, document sources, packing into fixed-length windows.

Nothing here knows about models. Four pieces:

- **Tokenizers** behind one small protocol (`encode_batch`, `vocab_size`, `eot`), chosen by a string:
  `bytes` (UTF-8 bytes, vocab 256, needs nothing), `gpt2` or any other tiktoken encoding name (tiktoken
  downloads the BPE files once and caches them), a path to a tiktoken BPE file (`*.tiktoken`: GPT-2's
  vocabulary offline), or a path to a Hugging Face `tokenizer.json`.
- **Documents**: CPython's own embedded prose (`pydoc_data.topics`, always there, offline), and records
  in the C4 schema (a `text` field) read through Hugging Face `datasets` in streaming mode, from local
  json/jsonl/parquet/txt files or from the hub (`allenai/c4`, config `en`). See `open_corpus`.
- **Packing**: documents are tokenized, joined with the end-of-text token and cut into windows of
  `block_size + 1` tokens; a model reads `window[:-1]` and predicts `window[1:]`.
- **Packed once, on disk** (`packed`, `PackedWindows`): the windows of a split written by HF `datasets`
  into its cache the first time a trial asks for them, keyed by everything that determines them, and
  read (memory-mapped) by every later trial and worker: tokenization leaves the training loop. The
  alternative, `PackedStream`, tokenizes while it trains (every trial, every rank).

Determinism: the training order depends only on the seed passed in (a seeded permutation of the packed
windows; for a stream, the document and window shuffle buffers and the DataLoader generator), so
every optimizer in a study sees the same batches. Validation is a fixed tensor of windows taken from the
start of the held-out documents.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import itertools
import json
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

# Special tokens that mark the end of a document in common tokenizer.json files, in order of preference.
EOT_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>", "[EOS]", "<|end_of_text|>", "[SEP]")


# --------------------------------------------------------------------------------------------------
# Tokenizers


class Tokenizer(Protocol):
    name: str
    vocab_size: int  # ids are in [0, vocab_size)
    eot: int  # separates documents in the packed stream

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens. Byte 0 (NUL) is the document separator: it never occurs in prose."""

    name = "bytes"
    vocab_size = 256
    eot = 0

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(t.encode("utf-8")) for t in texts]


class TiktokenTokenizer:
    """A tiktoken encoding (`gpt2`: GPT-2's 50257-token BPE). Special-token text in documents is encoded
    as ordinary text, so a document can't inject an end-of-text token."""

    def __init__(self, encoding: str):
        import tiktoken

        self._enc = (
            _tiktoken_file(encoding) if encoding.endswith(".tiktoken") else tiktoken.get_encoding(encoding)
        )
        self.name = encoding
        self.vocab_size = self._enc.n_vocab
        self.eot = self._enc.eot_token

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._enc.encode_ordinary_batch(list(texts))


def _tiktoken_file(path: str) -> Any:
    """A BPE ranks file in tiktoken's format, split with GPT-2's pattern, `<|endoftext|>` after the last
    rank. GPT-2's own file (sha256 306cd27f..., e.g. `whisper/assets/gpt2.tiktoken` in openai-whisper)
    tokenizes exactly like `gpt2`, with no download."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext.openai_public import r50k_pat_str

    if not Path(path).is_file():
        raise FileNotFoundError(f"tokenizer file not found: {path}")
    ranks = load_tiktoken_bpe(path)
    return tiktoken.Encoding(
        name=Path(path).stem,
        pat_str=r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": len(ranks)},
    )


class HFTokenizer:
    """A Hugging Face `tokenizers` file (tokenizer.json). Its end-of-text token is the first of
    `EOT_CANDIDATES` it knows; without one, a new id `vocab_size` is used as separator."""

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer as _Tokenizer

        self._tok = _Tokenizer.from_file(str(path))
        self.name = str(path)
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        ids = [self._tok.token_to_id(t) for t in EOT_CANDIDATES]
        known = [i for i in ids if i is not None]
        if known:
            self.eot = known[0]
        else:
            self.eot = self.vocab_size
            self.vocab_size += 1

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]


@functools.cache
def load_tokenizer(spec: str) -> Tokenizer:
    """`bytes`, a tiktoken encoding name (`gpt2`), a path to a tiktoken BPE file (`*.tiktoken`), or a
    path to a tokenizer.json."""
    if spec == "bytes":
        return ByteTokenizer()
    if spec.endswith(".tiktoken"):
        return TiktokenTokenizer(spec)
    if spec.endswith(".json") or Path(spec).is_file():
        if not Path(spec).is_file():
            raise FileNotFoundError(f"tokenizer file not found: {spec}")
        return HFTokenizer(spec)
    return TiktokenTokenizer(spec)


# --------------------------------------------------------------------------------------------------
# Packing


def pack(token_lists: Iterable[list[int]], eot: int, window: int) -> Iterator[list[int]]:
    """Concatenate documents, each followed by `eot`, and cut the stream into `window`-token pieces.
    The incomplete tail is dropped."""
    return (w for w, _ in pack_counted(token_lists, eot, window))


def pack_counted(token_lists: Iterable[list[int]], eot: int, window: int) -> Iterator[tuple[list[int], int]]:
    """`pack`, each window with the number of documents read (at least partly) when it was complete."""
    buf: list[int] = []
    for docs, ids in enumerate(token_lists, start=1):
        buf.extend(ids)
        buf.append(eot)
        n = len(buf) // window
        for i in range(n):
            yield buf[i * window : (i + 1) * window], docs
        buf = buf[n * window :]


def tokenized(texts: Iterable[str], tokenizer: Tokenizer, chunk: int = 256) -> Iterator[list[int]]:
    """Token ids of each text, encoded `chunk` texts at a time (tokenizers are faster in batches)."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == chunk:
            yield from tokenizer.encode_batch(batch)
            batch = []
    if batch:
        yield from tokenizer.encode_batch(batch)


class Windows(Dataset):
    """Non-overlapping windows of `window` tokens over one long token tensor (map-style)."""

    def __init__(self, tokens: torch.Tensor, window: int):
        self.tokens, self.window = tokens, window

    def __len__(self) -> int:
        return len(self.tokens) // self.window

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tokens[i * self.window : (i + 1) * self.window]


class PackedStream(IterableDataset):
    """Training windows from a stream of documents: tokenize, pack, then shuffle through a buffer of
    `shuffle_windows` windows (so one batch is not many pieces of one long document).

    With DataLoader workers, each worker reads its own part of the documents (`split_dataset_by_node`)
    and seeds its window buffer with (seed, worker id): the stream stays a function of the seed."""

    def __init__(
        self,
        documents: Any,  # datasets.IterableDataset with a text column
        tokenizer: Tokenizer,
        window: int,
        seed: int,
        text_field: str = "text",
        shuffle_windows: int = 1024,
    ):
        self.documents, self.tokenizer, self.window = documents, tokenizer, window
        self.seed, self.text_field, self.shuffle_windows = seed, text_field, shuffle_windows

    def __iter__(self) -> Iterator[torch.Tensor]:
        docs, worker = self.documents, get_worker_info()
        if worker is not None and worker.num_workers > 1:
            from datasets.distributed import split_dataset_by_node

            docs = split_dataset_by_node(docs, rank=worker.id, world_size=worker.num_workers)
        rng = random.Random(f"{self.seed}/{worker.id if worker else 0}")
        texts = (row[self.text_field] for row in docs)
        windows = pack(tokenized(texts, self.tokenizer), self.tokenizer.eot, self.window)
        for w in shuffle_buffer(windows, self.shuffle_windows, rng):
            yield torch.tensor(w, dtype=torch.long)


def shuffle_buffer(items: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Approximate shuffle of a stream with a buffer of `size` items (size <= 1: unchanged)."""
    if size <= 1:
        yield from items
        return
    buf: list[Any] = []
    for x in items:
        if len(buf) < size:
            buf.append(x)
            continue
        i = rng.randrange(size)
        yield buf[i]
        buf[i] = x
    rng.shuffle(buf)
    yield from buf


def seeded_loader(
    dataset: Dataset | IterableDataset, batch_size: int, seed: int, *, shuffle: bool, num_workers: int = 0
) -> DataLoader:
    """A DataLoader whose order is a function of `seed` only. Incomplete last batches are dropped so
    every step sees `batch_size` windows."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=True,
        num_workers=num_workers,
        generator=generator,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


# --------------------------------------------------------------------------------------------------
# Documents


def pydoc_text() -> str:
    """CPython's embedded documentation prose (~465 kB of English), topics in a fixed (sorted) order."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


@dataclass(frozen=True)
class Documents:
    """Where one split's documents come from, as data (hashable, and the key of the packed cache):
    local files of one format, or a split of a hub dataset. `open()` streams them
    (`datasets.IterableDataset` with a text column); `stamp()` says what determines their content
    (each file's path, size and modification time; the hub dataset's name, config and split)."""

    files: tuple[str, ...] = ()
    dataset: str = ""  # hub name, when there are no files
    config: str | None = None
    split: str = "train"
    local: str = ""  # for a hub dataset: the folder of local files that would have been used instead

    def __post_init__(self) -> None:
        builders = {_builder_for(f) for f in self.files}
        if len(builders) > 1:
            raise ValueError(f"data files mix formats ({', '.join(sorted(builders))}): {list(self.files)}")

    def open(self) -> Any:
        from datasets import load_dataset

        if not self.files:
            try:
                return load_dataset(self.dataset, self.config, split=self.split, streaming=True)
            except Exception as e:  # offline, unknown dataset, no such split...
                raise RuntimeError(
                    f"could not stream {self.dataset!r} (config {self.config!r}, split {self.split!r}) from "
                    f"the Hugging Face hub: {e}. Point the task at local files with `options: {{data_files: "
                    f"path/or/glob}}` (json/jsonl/parquet with a 'text' field) or put them under {self.local}/"
                ) from e
        builders = {_builder_for(f) for f in self.files}
        if len(builders) != 1:
            raise ValueError(f"data files mix formats ({', '.join(sorted(builders))}): {list(self.files)}")
        return load_dataset(
            builders.pop(), data_files={"train": list(self.files)}, split="train", streaming=True
        )

    def stamp(self) -> dict[str, Any]:
        if not self.files:
            return {"hub": self.dataset, "config": self.config, "split": self.split}
        return {"files": [[str(Path(f).resolve()), *_size_and_time(f)] for f in self.files]}


def _size_and_time(path: str) -> tuple[int, int]:
    st = Path(path).stat()
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class Corpus:
    """The documents of a training and a validation split. When `validation` is None, the first
    documents of `train` are held out for validation (and skipped for training)."""

    origin: str  # where the documents come from, for provenance and messages
    train: Documents
    validation: Documents | None


# File suffix -> the `datasets` packaged builder that reads it.
_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".txt": "text"}


def _builder_for(path: str) -> str:
    name = path.lower()
    for compressed in (".gz", ".zst", ".bz2", ".xz"):
        name = name.removesuffix(compressed)
    for suffix, builder in _BUILDERS.items():
        if name.endswith(suffix):
            return builder
    raise ValueError(f"can't tell the format of data file {path!r}: expected .json, .jsonl, .parquet or .txt")


def _expand(patterns: str | Sequence[str]) -> list[str]:
    """Files matching each pattern (glob), in sorted order; a missing file is an error."""
    files: list[str] = []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        matched = sorted(glob.glob(str(Path(pattern).expanduser()), recursive=True))
        if not matched:
            raise FileNotFoundError(f"no data file matches {pattern!r}")
        files.extend(matched)
    return files


def open_corpus(
    *,
    dataset: str,
    config: str | None,
    data_files: str | Sequence[str] | Mapping[str, str | Sequence[str]] | None,
    data_root: Path,
) -> Corpus:
    """Find the documents, in this order of preference:

    1. `data_files`: a path/glob or list of them (validation held out from the start), or a mapping
       `{train: ..., validation: ...}` (`validation` optional; `bench.tasks.gpt.C4Options` checks the
       keys). json/jsonl (optionally .gz), parquet or txt, C4 schema.
    2. `<data_root>/<last part of dataset name>/` when it exists (e.g. `data/c4/`): files whose name
       contains `validation` are the validation split, the rest train (C4's own file names:
       `c4-train.00000-of-01024.json.gz`, `c4-validation.00000-of-00008.json.gz`).
    3. The hub, streamed: `load_dataset(dataset, config, split=..., streaming=True)`.

    Nothing is read here: the corpus says where the documents are (`Documents`).
    """
    if data_files:
        if isinstance(data_files, Mapping):
            val = data_files.get("validation")
            return Corpus(
                origin=f"files {dict(data_files)}",
                train=Documents(files=tuple(_expand(data_files["train"]))),
                validation=Documents(files=tuple(_expand(val))) if val else None,
            )
        return Corpus(
            origin=f"files {data_files}", train=Documents(files=tuple(_expand(data_files))), validation=None
        )

    local = data_root / dataset.rstrip("/").split("/")[-1]
    if local.is_dir():
        files = sorted(str(p) for p in local.rglob("*") if p.is_file() and _has_known_format(p.name))
        val_files = [f for f in files if "validation" in Path(f).name]
        train_files = [f for f in files if f not in val_files]
        if not train_files:
            raise FileNotFoundError(f"{local} has no .json/.jsonl/.parquet/.txt training files")
        return Corpus(
            origin=f"local {local}",
            train=Documents(files=tuple(train_files)),
            validation=Documents(files=tuple(val_files)) if val_files else None,
        )
    return Corpus(
        origin=f"hub {dataset}/{config}",
        train=Documents(dataset=dataset, config=config, split="train", local=str(local)),
        validation=Documents(dataset=dataset, config=config, split="validation", local=str(local)),
    )


def _has_known_format(name: str) -> bool:
    try:
        _builder_for(name)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Tokenized and packed once, on disk

PACKING_VERSION = 1  # bump when `_packed_rows` would write other windows from the same inputs


def packed(
    documents: Documents,
    tokenizer: str,
    window: int,
    *,
    text_field: str = "text",
    skip_docs: int = 0,
    max_windows: int | None = None,
) -> Any:
    """The packed windows (`pack`) of `documents` after the first `skip_docs`, at most `max_windows`
    of them, as a `datasets.Dataset` with columns `ids` (a window's token ids) and `docs` (documents
    read from the start when the window was complete).

    Tokenized and packed once: HF `datasets` stores them in its cache (Arrow, memory-mapped) under a
    fingerprint of everything that determines them (the documents' `stamp()`, the tokenizer spec and
    its file's digest, `window`, `text_field`, `skip_docs`, `max_windows`, `PACKING_VERSION`). Every
    later call with the same inputs, from any trial or worker process, reads the stored windows;
    `datasets` locks the cache while one process writes it."""
    from datasets import Dataset, Features, Sequence, Value
    from datasets.exceptions import DatasetGenerationError

    key = {
        "version": PACKING_VERSION,
        "documents": documents.stamp(),
        "tokenizer": _tokenizer_stamp(tokenizer),
        "window": window,
        "text_field": text_field,
        "skip_docs": skip_docs,
        "max_windows": max_windows,
    }
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
    dtype = "uint16" if load_tokenizer(tokenizer).vocab_size <= 2**16 else "int32"
    features = Features({"ids": Sequence(Value(dtype), length=window), "docs": Value("int64")})
    kwargs = dict(documents=documents, tokenizer=tokenizer, window=window, text_field=text_field,
                  skip_docs=skip_docs, max_windows=max_windows)  # fmt: skip
    try:
        return Dataset.from_generator(
            _packed_rows, features=features, gen_kwargs=kwargs, fingerprint=fingerprint
        )
    except DatasetGenerationError as e:  # the reading's own error (a hub out of reach...), unwrapped
        raise (e.__cause__ or e) from None


def _tokenizer_stamp(spec: str) -> str:
    """The tokenizer spec, with the content digest of a tokenizer file (an edited file is a new key)."""
    if Path(spec).is_file():
        return f"{spec}@sha256:{hashlib.sha256(Path(spec).read_bytes()).hexdigest()}"
    return spec


def _packed_rows(
    documents: Documents,
    tokenizer: str,
    window: int,
    text_field: str,
    skip_docs: int,
    max_windows: int | None,
) -> Iterator[dict[str, Any]]:
    tok = load_tokenizer(tokenizer)
    texts = itertools.islice((row[text_field] for row in documents.open()), skip_docs, None)
    rows = pack_counted(tokenized(texts, tok), tok.eot, window)
    for ids, docs in itertools.islice(rows, max_windows):
        yield {"ids": ids, "docs": skip_docs + docs}


class PackedWindows(Dataset):
    """Windows stored by `packed`, as LongTensors of `window` tokens (map-style: a DataLoader shuffles
    them with a seeded generator, and each process of a multi-process trial reads only its own)."""

    def __init__(self, data: Any):
        self.data = data.with_format("numpy", columns=["ids"])

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(self.data[i]["ids"].astype(np.int64))

    def __getitems__(self, indices: list[int]) -> list[torch.Tensor]:
        return list(torch.from_numpy(self.data[indices]["ids"].astype(np.int64)))  # one read per batch
