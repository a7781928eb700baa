"""The GPT model and the language-model tasks: shapes, real loaders fed by local C4-schema files,
deterministic batches, exact validation sums, pluggable tokenizers, loss that falls, the options
schema's rules and the declared parameter roles."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from task_helpers import build as build_task

from bench.catalog import TASKS
from bench.tasks import gpt
from bench.tasks.gpt import SIZES, GPTConfig
from bench.workloads import gpt as workload
from bench.workloads import text_data
from bench.workloads.gpt import GPT, LanguageModelTask

# A model small enough that a few dozen steps take a second on a CPU; the data path is the real one.
MICRO = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "val_tokens": 1024, "batch_size": 8}
LM_TASKS = ["pydocs_gpt_tiny", "c4_gpt_tiny", "c4_gpt_small", "c4_gpt_124m", "c4_gpt_350m"]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matmuls gain nothing from threads, and on a busy machine OpenMP threads waiting on each
    other make a step several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, options: dict, tmp_path: Path, seed: int = 0) -> LanguageModelTask:
    return build_task(name, options, seed, tmp_path)


def first_batches(task: LanguageModelTask, n: int) -> list[torch.Tensor]:
    return list(islice(iter(task.train_loader()), n))


def validate(task: LanguageModelTask, model: torch.nn.Module) -> tuple[float, int]:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in task.val_loader():
            sums, n = task.validation_sums(model, batch)
            total, count = total + sums["loss"].item(), count + n
    model.train()
    return total / count, count


def train(task: LanguageModelTask, steps: int, lr: float = 3e-3, seed: int = 0) -> tuple[float, float]:
    """(validation loss before, after) `steps` of AdamW."""
    torch.manual_seed(seed)
    model = task.build_model()
    before, _ = validate(task, model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    for batch in islice(iter(task.train_loader()), steps):
        loss = task.training_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after, _ = validate(task, model)
    return before, after


# --------------------------------------------------------------------------------------------------
# The model


def test_forward_shapes_and_tied_head() -> None:
    cfg = GPTConfig(vocab_size=256, block_size=16, n_layer=2, n_head=2, n_embd=32)
    model = GPT(cfg)
    idx = torch.randint(0, 256, (3, 16))
    assert model(idx).shape == (3, 16, 256)
    assert model(idx[:, :5]).shape == (3, 5, 256)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert isinstance(model.transformer.wte, torch.nn.Embedding) and isinstance(
        model.lm_head, torch.nn.Linear
    )
    names = [n for n, _ in model.named_parameters()]
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names  # listed once
    with pytest.raises(ValueError, match="longer than block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_attention_is_causal() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=2, n_head=2, n_embd=32)).eval()
    a = torch.randint(0, 256, (1, 16))
    b = a.clone()
    b[0, 10:] = (b[0, 10:] + 1) % 256  # change only the future of position 9
    with torch.no_grad():
        assert torch.allclose(model(a)[0, :10], model(b)[0, :10], atol=1e-6)
        assert not torch.allclose(model(a)[0, 10:], model(b)[0, 10:])


def test_param_roles_tell_hidden_matrices_from_embeddings_and_head(tmp_path: Path) -> None:
    task = build("pydocs_gpt_tiny", MICRO, tmp_path)
    model = task.build_model()
    roles = task.param_roles(model)
    # lm_head.weight is transformer.wte.weight, listed once under that name: head and embedding at once.
    assert roles.head == {"transformer.wte.weight"}
    assert roles.embedding == {"transformer.wte.weight", "transformer.wpe.weight"}
    hidden = [n for n, p in model.named_parameters() if p.ndim >= 2 and n not in roles.head | roles.embedding]
    assert "transformer.h.0.attn.c_attn.weight" in hidden
    assert len(hidden) == 2 * 4  # c_attn, c_proj, c_fc, c_proj per block


@pytest.mark.parametrize(
    "cfg",
    [
        GPTConfig(vocab_size=256, block_size=16, n_layer=2, n_head=2, n_embd=32),
        GPTConfig(vocab_size=320, block_size=8, n_layer=3, n_head=4, n_embd=64),
    ],
)
def test_parameter_count_formula_matches_the_model(cfg: GPTConfig) -> None:
    model = GPT(cfg)
    for non_embedding in (True, False):
        assert gpt.num_params(cfg, non_embedding) == model.num_params(non_embedding)
    assert gpt.num_params(cfg, False) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("size", "low", "high"), [("124m", 123e6, 126e6), ("350m", 352e6, 358e6)])
def test_gpt2_sizes_have_gpt2_parameter_counts(size: str, low: float, high: float) -> None:
    assert low < gpt.num_params(GPTConfig(vocab_size=gpt.padded_vocab(50257), **SIZES[size]), False) < high


def test_config_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=100, n_head=3)
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(dropout=1.0)


# --------------------------------------------------------------------------------------------------
# Registry entries


@pytest.mark.parametrize("name", LM_TASKS)
def test_entries_declare_budgets(name: str) -> None:
    e = TASKS.get(name)
    options = e.default_options
    block = options["block_size"]
    assert e.metric == "val/loss" and e.mode == "min" and e.metrics == {"val/loss": "min", "val/ppl": "min"}
    assert e.tokens_per_step == e.batch_size * block
    n_params = 6 * (options["n_layer"] * 12 * options["n_embd"] ** 2)  # hidden matrices only
    assert e.flops_per_step > n_params * e.tokens_per_step
    assert e.requires_gpu == (e.size not in ("tiny",))
    assert e.target is not None and 0 < e.target < math.log(50304)
    assert 0 < e.eval_every <= e.steps


def test_token_budgets() -> None:
    assert TASKS.get("c4_gpt_124m").steps * TASKS.get("c4_gpt_124m").tokens_per_step == pytest.approx(
        2.5e9, rel=1e-3
    )
    assert TASKS.get("c4_gpt_350m").steps * TASKS.get("c4_gpt_350m").tokens_per_step == pytest.approx(
        7e9, rel=1e-3
    )


def test_flops_are_declared_for_the_default_tokenizer() -> None:
    """FLOPs are computed without tiktoken: GPT-2's vocabulary is declared (50257, padded to 50304)."""
    e = TASKS.get("c4_gpt_124m")
    cfg = GPTConfig(vocab_size=50304, **SIZES["124m"])
    assert e.flops_per_step == gpt.flops_per_token(cfg) * e.tokens_per_step
    assert gpt.vocab_size_of("bytes") == 256 and gpt.vocab_size_of("my/tokenizer.json") is None


# --------------------------------------------------------------------------------------------------
# The options schema: every rule checked once, when the suite is validated


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("pydocs_gpt_tiny", {"n_layers": 2}, r"n_layers\n.*Extra inputs are not permitted"),
        ("pydocs_gpt_tiny", {"n_layer": 0}, r"n_layer\n.*greater than or equal to 1"),
        ("pydocs_gpt_tiny", {"n_layer": "4"}, r"n_layer\n.*valid integer"),  # strict: no coercion
        (
            "pydocs_gpt_tiny",
            {"n_embd": 100, "n_head": 3},
            r"n_embd \(100\) must be divisible by n_head \(3\)",
        ),
        ("pydocs_gpt_tiny", {"dropout": 1.0}, r"dropout\n.*less than 1"),
        ("pydocs_gpt_tiny", {"val_tokens": 100}, r"val_tokens \(100\) must be at least block_size \(128\)"),
        ("pydocs_gpt_tiny", {"val_fraction": 0}, r"val_fraction\n.*greater than 0"),
        ("pydocs_gpt_tiny", {"shuffle_buffer": 8}, r"shuffle_buffer\n.*Extra inputs"),  # C4 only
        ("c4_gpt_tiny", {"num_workers": -1}, r"num_workers\n.*greater than or equal to 0"),
        ("c4_gpt_tiny", {"data_files": {"valid": "a.jsonl"}}, r"needs a 'train' key .* got keys \['valid'\]"),
        ("c4_gpt_tiny", {"data_files": 3}, r"data_files"),
        ("c4_gpt_tiny", {"tokenizer": ""}, r"tokenizer\n.*at least 1 character"),
    ],
)
def test_options_schema_rejects(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TASKS.get(name).options.model_validate(options)


def test_options_schema_accepts_every_data_files_form() -> None:
    schema = TASKS.get("c4_gpt_tiny").options
    for files in ("c4/*.json.gz", ["a.jsonl", "b.jsonl"], {"train": ["a.jsonl"], "validation": "b.jsonl"}):
        assert schema.model_validate({"data_files": files}).data_files == files
    assert schema.model_validate({"dropout": 0}).dropout == 0.0  # an int where a float is expected
    assert schema.model_validate({"dataset_config": None}).dataset_config is None


# --------------------------------------------------------------------------------------------------
# pydocs_gpt_tiny: the default model, the real (embedded) data


def test_pydocs_loss_falls_with_adamw(tmp_path: Path) -> None:
    assert build("pydocs_gpt_tiny", {}, tmp_path).config == GPTConfig(vocab_size=256, **SIZES["tiny"])
    # A narrower model than the default keeps the test quick; the data path is the task's own.
    small = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "batch_size": 8, "val_tokens": 2048}
    task = build("pydocs_gpt_tiny", small, tmp_path)
    before, after = train(task, steps=30, lr=1e-2)
    assert before > 5.0  # ~ln(256) at initialisation
    assert after < before - 1.5


def test_pydocs_validation_sums_are_exact(tmp_path: Path) -> None:
    task = build("pydocs_gpt_tiny", MICRO | {"val_tokens": 1000, "batch_size": 7}, tmp_path)
    assert task.val_windows.shape == (1000 // 32, 33)
    torch.manual_seed(0)
    model = task.build_model()
    mean, count = validate(task, model)
    assert count == (1000 // 32) * 32
    with torch.no_grad():  # the same mean over the whole split at once
        logits = model(task.val_windows[:, :-1])
        direct = F.cross_entropy(logits.flatten(0, 1), task.val_windows[:, 1:].flatten()).item()
    assert mean == pytest.approx(direct, rel=1e-5)


def test_pydocs_split_is_held_out_and_fixed(tmp_path: Path) -> None:
    a = build("pydocs_gpt_tiny", MICRO, tmp_path, seed=0)
    b = build("pydocs_gpt_tiny", MICRO, tmp_path, seed=1)
    assert torch.equal(a.val_windows, b.val_windows)  # validation does not depend on the seed
    tokens = workload._pydoc_tokens("bytes")
    split = int(len(tokens) * 0.9)
    assert torch.equal(a.val_windows[0], tokens[split : split + 33])
    assert len(a.train_data) * 33 <= split  # training windows stay before the split


def test_batches_are_a_function_of_the_seed(tmp_path: Path) -> None:
    a = first_batches(build("pydocs_gpt_tiny", MICRO, tmp_path, seed=3), 3)
    b = first_batches(build("pydocs_gpt_tiny", MICRO, tmp_path, seed=3), 3)
    c = first_batches(build("pydocs_gpt_tiny", MICRO, tmp_path, seed=4), 3)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert a[0].shape == (8, 33) and a[0].dtype == torch.long


# --------------------------------------------------------------------------------------------------
# C4 tasks through the real loader, fed local files in the hub's schema


def test_c4_local_files_hold_out_validation(
    tmp_path: Path, english_docs: list[str], write_c4: Callable[..., Path]
) -> None:
    path = write_c4("c4/en/mine.jsonl", english_docs)
    task = build("c4_gpt_tiny", MICRO | {"data_files": str(path), "shuffle_buffer": 8}, tmp_path / "none")
    assert task.origin.startswith("files")
    assert task.val_windows.shape == (1024 // 32, 33)
    val_text = bytes(task.val_windows.flatten().tolist()).decode("utf-8", errors="replace")
    held_out = {m for m in (f"[doc {i:03d}]" for i in range(len(english_docs))) if m in val_text}
    assert "[doc 000]" in held_out
    # Training never sees a held-out document: collect every training window of one pass.
    train_text = b"".join(bytes(w.tolist()) for w in task.train_data).decode("utf-8", errors="replace")
    assert not any(m in train_text for m in held_out)
    assert f"[doc {len(english_docs) - 1:03d}]" in train_text


def test_c4_builds_from_the_resolvers_frozen_options(
    tmp_path: Path, english_docs: list[str], write_c4: Callable[..., Path]
) -> None:
    """The runner passes the options as the suite resolver froze them: read-only mappings, tuples."""
    files = MappingProxyType(
        {
            "train": (str(write_c4("a.jsonl", english_docs[:100])),),
            "validation": str(write_c4("b.jsonl", english_docs[100:])),
        }
    )
    entry = TASKS.get("c4_gpt_tiny")
    micro = {k: v for k, v in MICRO.items() if k != "batch_size"}
    options = entry.options.model_validate(micro).model_dump() | {"data_files": files, "batch_size": 8}
    task = entry.build(MappingProxyType(options), 0, tmp_path)
    assert task.origin == f"files {dict(files)}"
    assert bytes(task.val_windows[0, :9].tolist()) == b"[doc 100]"
    assert first_batches(task, 1)[0].shape == (8, 33)


def test_c4_data_root_layout_and_determinism(
    tmp_path: Path, english_docs: list[str], write_c4: Callable[..., Path]
) -> None:
    # C4's own file names under <data_root>/c4/: the validation file is the validation split.
    write_c4("data/c4/en/c4-train.00000-of-00002.json.gz", english_docs[:50])
    write_c4("data/c4/en/c4-train.00001-of-00002.json.gz", english_docs[50:100])
    write_c4("data/c4/en/c4-validation.00000-of-00001.json.gz", english_docs[100:])
    a = build("c4_gpt_tiny", MICRO, tmp_path / "data", seed=0)
    assert a.origin == f"local {tmp_path / 'data' / 'c4'}"
    assert bytes(a.val_windows[0, :9].tolist()) == b"[doc 100]"
    b = build("c4_gpt_tiny", MICRO, tmp_path / "data", seed=0)
    c = build("c4_gpt_tiny", MICRO, tmp_path / "data", seed=1)
    batches_a, batches_b, batches_c = first_batches(a, 3), first_batches(b, 3), first_batches(c, 3)
    assert all(torch.equal(x, y) for x, y in zip(batches_a, batches_b, strict=True))
    assert not torch.equal(batches_a[0], batches_c[0])
    assert torch.equal(a.val_windows, c.val_windows)


def test_c4_tiny_loss_falls_with_a_validation_split(
    tmp_path: Path, english_docs: list[str], write_c4: Callable[..., Path]
) -> None:
    files = {
        "train": str(write_c4("train.json.gz", english_docs[:100])),
        "validation": str(write_c4("validation.json.gz", english_docs[100:])),
    }
    task = build("c4_gpt_tiny", MICRO | {"data_files": files}, tmp_path)
    assert bytes(task.val_windows[0, :9].tolist()) == b"[doc 100]"
    before, after = train(task, steps=40, lr=1e-2)
    assert after < before - 1.5


def test_c4_reads_parquet(tmp_path: Path, english_docs: list[str], write_c4: Callable[..., Path]) -> None:
    # (datasets sleeps 5 s when a parquet stream closes, apache/arrow#45214: one read only)
    path = write_c4("c4.parquet", english_docs[:20])
    task = build("c4_gpt_tiny", MICRO | {"data_files": str(path), "val_tokens": 64}, tmp_path)
    assert bytes(task.val_windows[0, :9].tolist()) == b"[doc 000]"


def test_c4_with_a_tokenizer_json(
    tmp_path: Path, english_docs: list[str], write_c4: Callable[..., Path]
) -> None:
    import tokenizers  # a dependency of bench: never skipped

    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(english_docs, trainer=trainer)
    tok_path = tmp_path / "tokenizer.json"
    tok.save(str(tok_path))

    loaded = text_data.load_tokenizer(str(tok_path))
    assert loaded.eot == tok.token_to_id("<|endoftext|>") == 1
    path = write_c4("docs.jsonl", english_docs)
    task = build("c4_gpt_tiny", MICRO | {"data_files": str(path), "tokenizer": str(tok_path)}, tmp_path)
    assert task.config.vocab_size == gpt.padded_vocab(loaded.vocab_size) == 448
    batch = first_batches(task, 1)[0]
    assert batch.max() < loaded.vocab_size and (task.val_windows == 1).any()  # documents end with EOT
    before, after = train(task, steps=30, lr=1e-2)
    assert after < before - 1.0


def test_tokenizer_specs() -> None:
    b = text_data.load_tokenizer("bytes")
    assert (b.vocab_size, b.eot) == (256, 0)
    assert b.encode_batch(["hé"]) == [[104, 195, 169]]
    with pytest.raises(FileNotFoundError):
        text_data.load_tokenizer("missing/tokenizer.json")


def test_tiktoken_file_uses_gpt2_splitting_and_appends_eot(tmp_path: Path) -> None:
    import base64

    # A byte-level vocabulary plus two merges, in tiktoken's file format (base64 token, rank).
    ranks = {bytes([i]): i for i in range(256)} | {b"th": 256, b"the": 257}
    path = tmp_path / "tiny.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items()))
    tok = text_data.load_tokenizer(str(path))
    assert (tok.vocab_size, tok.eot) == (259, 258)
    # GPT-2's pattern splits before the space, so " the" is a space token then the merged "the".
    assert tok.encode_batch(["the the"]) == [[257, 32, 257]]
    assert tok.encode_batch(["<|endoftext|>"])[0] != [258]  # document text can't inject the separator
    with pytest.raises(FileNotFoundError):
        text_data.load_tokenizer(str(tmp_path / "missing.tiktoken"))


def test_pack_joins_documents_with_eot() -> None:
    windows = list(text_data.pack([[1, 2], [3, 4, 5], [6]], eot=0, window=3))
    assert windows == [[1, 2, 0], [3, 4, 5], [0, 6, 0]]


def test_hub_offline_error_names_the_way_out(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="set options.train_tokens .* or options.stream: true"):
        build("c4_gpt_tiny", MICRO, tmp_path)  # the hub's C4 is too big to pack whole
    with pytest.raises(RuntimeError, match="data_files"):
        build("c4_gpt_tiny", MICRO | {"train_tokens": 10_000}, tmp_path)
    with pytest.raises(RuntimeError, match="data_files"):
        build("c4_gpt_tiny", MICRO | {"stream": True}, tmp_path)


# --------------------------------------------------------------------------------------------------
# Packed once into the datasets cache


def test_c4_windows_are_tokenized_once_and_read_by_every_later_trial(
    tmp_path: Path, english_docs: list[str], write_c4: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    tokenized = text_data.tokenized
    monkeypatch.setattr(text_data, "tokenized", lambda *a, **k: calls.append(1) or tokenized(*a, **k))
    path = write_c4("c4.jsonl", english_docs)
    options = MICRO | {"data_files": str(path)}
    first = build("c4_gpt_tiny", options, tmp_path, seed=0)
    assert len(calls) == 2  # validation and training, packed once
    again, other_seed = (
        build("c4_gpt_tiny", options, tmp_path, seed=0),
        build("c4_gpt_tiny", options, tmp_path, seed=1),
    )
    assert len(calls) == 2  # two more trials: read from the cache, nothing tokenized
    assert isinstance(first.train_data, text_data.PackedWindows)
    assert all(
        torch.equal(a, b) for a, b in zip(first_batches(first, 3), first_batches(again, 3), strict=True)
    )
    assert not torch.equal(first_batches(first, 1)[0], first_batches(other_seed, 1)[0])
    assert torch.equal(first.val_windows, other_seed.val_windows)
    assert len(first.train_data) > 0 and first.train_data[0].dtype == torch.long
    # Other text in the file (another size or time): packed again.
    write_c4("c4.jsonl", english_docs[:-1])
    build("c4_gpt_tiny", options, tmp_path, seed=0)
    assert len(calls) == 4


def test_packed_windows_are_the_streamed_windows(
    tmp_path: Path, english_docs: list[str], write_c4: Callable[..., Path]
) -> None:
    """The cache holds exactly what packing the document stream gives (no shuffling: buffer 0)."""
    files = {
        "train": str(write_c4("a.jsonl", english_docs[:100])),
        "validation": str(write_c4("b.jsonl", english_docs[100:])),
    }
    cached = build("c4_gpt_tiny", MICRO | {"data_files": files}, tmp_path)
    streamed = build(
        "c4_gpt_tiny", MICRO | {"data_files": files, "stream": True, "shuffle_buffer": 0}, tmp_path
    )
    assert isinstance(streamed.train_data, text_data.PackedStream)
    stream = list(streamed.train_data)
    assert len(stream) == len(cached.train_data) > 0
    assert all(torch.equal(s, cached.train_data[i]) for i, s in enumerate(stream))
    capped = build("c4_gpt_tiny", MICRO | {"data_files": files, "train_tokens": 5 * 33}, tmp_path)
    assert len(capped.train_data) == 5 and torch.equal(capped.train_data[4], stream[4])


def test_each_rank_reads_only_its_windows(
    tmp_path: Path, english_docs: list[str], write_c4: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import distributed

    task = build("c4_gpt_tiny", MICRO | {"data_files": str(write_c4("c4.jsonl", english_docs))}, tmp_path)
    single = first_batches(task, 2)
    read: list[int] = []
    getitems = text_data.PackedWindows.__getitems__
    monkeypatch.setattr(
        text_data.PackedWindows, "__getitems__", lambda self, ix: read.extend(ix) or getitems(self, ix)
    )
    half = build(
        "c4_gpt_tiny",
        MICRO | {"data_files": str(write_c4("c4.jsonl", english_docs)), "batch_size": 4},
        tmp_path,
    )
    ranks = [
        list(islice(iter(distributed.shard_loader(half.train_loader(), r, 2, train=True)), 2))
        for r in range(2)
    ]
    for k in range(2):  # the two ranks' windows together are the single-process batch
        assert sorted(torch.cat([ranks[0][k], ranks[1][k]]).tolist()) == sorted(single[k].tolist())
    assert len(read) == 2 * 2 * 4  # two ranks, two batches of four windows: nothing read twice
