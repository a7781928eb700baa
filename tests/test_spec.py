"""Suite loading: includes, precedence, overrides, validation messages, purity.

Bad suites live in tests/suites/bad/, one file per kind of mistake; each states the message it must
produce in `# expect:` comment lines (substrings of `str(SpecError)`, the first one its prefix).
Adding a fixture adds a test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from bench.catalog import OPTIMIZERS
from bench.loader import load_settings, load_suite, parse_overrides, parse_value
from bench.schema import Settings
from bench.space import Categorical, Float
from bench.spec import COMMAND_LINE, SpecError, Suite

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "suites"
BAD = sorted((FIXTURES / "bad").glob("*.yaml"))
GOOD = sorted((FIXTURES / "good").glob("*.yaml"))
SHIPPED = sorted((REPO / "suites").glob("*.yaml"))


@pytest.fixture(autouse=True)
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages show paths relative to the working directory; run from the repo root."""
    monkeypatch.chdir(REPO)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def expectations(path: Path) -> list[str]:
    text = path.read_bytes().decode("utf-8", errors="replace")  # a fixture may hold bytes that are not UTF-8
    return [
        line.removeprefix("# expect:").strip() for line in text.splitlines() if line.startswith("# expect:")
    ]


# --------------------------------------------------------------------------------------------------
# Fixtures: every bad suite fails with its message, every good and shipped suite loads.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_suite_message(path: Path) -> None:
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(SpecError) as info:
        load_suite(path.relative_to(REPO))
    message = str(info.value)
    assert message.startswith(expected[0]), message
    for fragment in expected[1:]:
        assert fragment in message, message


@pytest.mark.parametrize("path", GOOD + SHIPPED, ids=[f"{p.parent.name}/{p.stem}" for p in GOOD + SHIPPED])
def test_good_suite_loads(path: Path) -> None:
    suite = load_suite(path)
    assert isinstance(suite, Suite)
    assert suite.tasks and suite.optimizers
    json.dumps(suite.resolved)  # provenance must be serialisable


def test_minimal_suite_gets_defaults() -> None:
    suite = load_suite(FIXTURES / "good" / "minimal.yaml")
    assert suite.name == "minimal"
    (task,) = suite.tasks
    entry = task.entry
    assert (task.name, task.steps, task.batch_size, task.eval_every) == (
        "digits_cnn",
        entry.steps,
        entry.batch_size,
        entry.eval_every,
    )
    assert (task.metric, task.mode, task.target) == (entry.metric, entry.mode, entry.target)
    assert task.options == entry.default_options
    (opt,) = suite.optimizers
    assert opt.label == "adamw" and opt.entry is OPTIMIZERS.get("adamw")
    assert dict(opt.search_space) == dict(opt.entry.search_space)
    assert opt.fixed == {} and opt.decay_filter and opt.ema is None
    assert suite.leaderboard.reference == "adamw"


def test_full_suite_reads_every_key() -> None:
    suite = load_suite(FIXTURES / "good" / "full.yaml")
    assert suite.name == "full_example" and suite.description.startswith("every key")
    assert suite.settings.tracking_uri == "sqlite:///full.db" and suite.settings.device == "cpu"
    assert suite.settings.data_root == "inner_data"  # from the nested include
    mlp, cnn, gpt = suite.tasks
    assert mlp.name == "digits_mlp"
    assert (cnn.steps, cnn.batch_size, cnn.eval_every, cnn.target) == (40, 32, 10, 0.2)
    assert cnn.options == {"width": 8}
    # Another metric than the entry's: its direction comes from the entry, its target is unset.
    assert (gpt.metric, gpt.mode, gpt.target) == ("val/ppl", "min", None)

    adamw, sgd, lion = suite.optimizers
    assert sgd.label == "sgd_nesterov" and sgd.entry.name == "sgd"
    assert sgd.fixed == {"nesterov": True, "momentum": 0.95}
    # search_space replaces the default space; `{}` keeps a default parameter as it is.
    assert dict(sgd.search_space) == {
        "lr": Float(1e-3, 1.0, log=True),
        "weight_decay": OPTIMIZERS.get("sgd").search_space["weight_decay"],
    }
    assert (sgd.decay_filter, sgd.ema, sgd.batch_size) == (False, 0.99, 64)
    # The optimizer's schedule is merged over the suite's (which merged over the include's).
    assert (sgd.schedule.name, sgd.schedule.warmup, sgd.schedule.cooldown) == ("wsd", 0.1, 0.3)
    assert sgd.schedule.min_lr_ratio == 0.1
    assert (lion.schedule.name, lion.schedule.warmup) == ("linear", 0.1)  # `schedule: linear` shorthand
    assert (adamw.schedule.name, adamw.schedule.warmup) == ("cosine", 0.1)
    # One key of a default range: merged over the entry's default for it.
    default_lr = OPTIMIZERS.get("lion").search_space["lr"]
    assert lion.search_space["lr"] == Float(default_lr.low, 1e-3, log=default_lr.log)

    t = suite.tuning
    assert (t.protocol, t.trials, t.seeds, t.sampler_seed, t.pruner) == ("qmc", 3, 2, 7, "median")
    assert (t.trial_time_budget_s, t.study_time_budget_s, t.divergence_factor) == (60.0, None, 4.0)
    assert isinstance(t.divergence_factor, float)
    tr = suite.trainer
    assert (tr.accelerator, tr.precision, tr.accumulate_grad_batches) == ("cpu", "32", 2)
    assert suite.leaderboard.ks == (1, 2) and suite.leaderboard.reference == "sgd_nesterov"


def test_nested_includes_precedence() -> None:
    suite = load_suite(FIXTURES / "good" / "with_includes.yaml")
    t = suite.tuning
    # with_includes.yaml (trials) > shared.yaml (seeds) > inner.yaml (sampler_seed, pruner)
    assert (t.trials, t.seeds, t.sampler_seed, t.pruner) == (2, 3, 3, "hyperband")
    assert suite.optimizers[0].schedule.warmup == 0.2


# --------------------------------------------------------------------------------------------------
# benchmark.yaml and precedence
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a benchmark.yaml, an include and a suite one directory down."""
    write(
        tmp_path / "benchmark.yaml",
        "tracking_uri: sqlite:///project.db\ndata_root: project_data\ndevice: cpu\n"
        "tuning: {trials: 11, seeds: 5, sampler_seed: 9}\ntrainer: {precision: bf16-mixed}\n",
    )
    write(
        tmp_path / "suites" / "common.yaml",
        "tuning: {trials: 7, seeds: 4}\nsettings: {data_root: common_data}\n",
    )
    write(
        tmp_path / "suites" / "s.yaml",
        "include: [common.yaml]\ntasks: [digits_cnn]\noptimizers: [adamw]\ntuning: {trials: 3}\n",
    )
    return tmp_path


def test_precedence_project_include_suite_override(project: Path) -> None:
    suite = load_suite(project / "suites" / "s.yaml", {"tuning.trials": 2})
    t = suite.tuning
    assert t.trials == 2  # override > suite (3) > include (7) > benchmark.yaml (11)
    assert t.seeds == 4  # include > benchmark.yaml
    assert t.sampler_seed == 9  # benchmark.yaml
    assert suite.trainer.precision == "bf16-mixed"
    assert suite.settings.tracking_uri == "sqlite:///project.db"
    assert suite.settings.data_root == "common_data"
    assert suite.resolved["tuning"]["trials"] == 2
    assert suite.resolved["settings"]["data_root"] == "common_data"


def test_overrides_settings_and_list_items(project: Path) -> None:
    suite = load_suite(
        project / "suites" / "s.yaml",
        {"settings.tracking_uri": "sqlite:///x.db", "tasks[0].steps": 5, "optimizers[0].fixed.lr": 0.01},
    )
    assert suite.settings.tracking_uri == "sqlite:///x.db"
    assert suite.tasks[0].name == "digits_cnn" and suite.tasks[0].steps == 5  # a bare name became a mapping
    assert suite.optimizers[0].fixed == {"lr": 0.01}
    assert "lr" not in suite.optimizers[0].search_space  # fixed values leave the search space


def test_mapping_override_merges(project: Path) -> None:
    suite = load_suite(project / "suites" / "s.yaml", {"tuning": {"seeds": 2}, "schedule": "wsd"})
    assert (suite.tuning.trials, suite.tuning.seeds) == (3, 2)  # trials kept from the suite
    assert suite.optimizers[0].schedule.name == "wsd"


def test_override_errors_name_the_command_line(project: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_suite(project / "suites" / "s.yaml", {"tuning.trails": 2})
    assert str(info.value).startswith(
        f"{COMMAND_LINE}: tuning.trails: unknown key 'trails'. Did you mean 'trials'?"
    )
    with pytest.raises(SpecError, match=r"^command line: tuning.trials: must be >= 1, got 0"):
        load_suite(project / "suites" / "s.yaml", {"tuning.trials": 0})
    with pytest.raises(SpecError, match=r"^command line: tasks\[3\]: no such item in the suite"):
        load_suite(project / "suites" / "s.yaml", {"tasks[3].steps": 5})


def test_parse_overrides() -> None:
    assert parse_overrides(["tuning.trials=2", "optimizers[0].fixed.lr = 1e-3", "settings.device=cpu"]) == {
        "tuning.trials": 2,
        "optimizers[0].fixed.lr": 0.001,
        "settings.device": "cpu",
    }
    assert parse_value("[1, 4]") == [1, 4] and parse_value("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(SpecError, match="expected an override like tuning.trials=2"):
        parse_overrides(["tuning.trials"])


def test_load_settings_upward_then_cwd(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch
) -> None:
    settings, defaults = load_settings(project / "suites")
    assert settings == Settings(tracking_uri="sqlite:///project.db", data_root="project_data", device="cpu")
    assert defaults == {
        "tuning": {"trials": 11, "seeds": 5, "sampler_seed": 9},
        "trainer": {"precision": "bf16-mixed"},
    }
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(project)
    assert load_settings(elsewhere)[0].tracking_uri == "sqlite:///project.db"  # falls back to the cwd
    monkeypatch.chdir(elsewhere)
    assert load_settings(elsewhere) == (Settings(), {})  # none anywhere: the defaults


def test_repo_benchmark_yaml_is_the_default() -> None:
    settings, _ = load_settings(REPO / "suites")
    assert settings == Settings()  # the committed file spells out the defaults


def test_benchmark_yaml_errors(tmp_path: Path) -> None:
    write(tmp_path / "benchmark.yaml", "tracking_url: sqlite:///x.db\n")
    with pytest.raises(SpecError) as info:
        load_settings(tmp_path)
    assert "tracking_url: unknown key 'tracking_url'. Did you mean 'tracking_uri'?" in str(info.value)
    write(tmp_path / "benchmark.yaml", "settings: {device: cpu}\n")
    with pytest.raises(SpecError, match="settings keys go at the top level"):
        load_settings(tmp_path)
    write(tmp_path / "benchmark.yaml", "tuning: {trials: -1}\n")
    with pytest.raises(SpecError, match=r"benchmark.yaml: tuning.trials: must be >= 1, got -1"):
        load_settings(tmp_path)
    # ... and a suite below it names benchmark.yaml, not the suite, for that key.
    suite = write(tmp_path / "s.yaml", "tasks: [digits_cnn]\noptimizers: [adamw]\n")
    with pytest.raises(SpecError, match=r"benchmark.yaml: tuning.trials: must be >= 1, got -1"):
        load_suite(suite)


# --------------------------------------------------------------------------------------------------
# Individual rules
# --------------------------------------------------------------------------------------------------


def test_yaml_reads_exponent_floats(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.yaml",
        "tasks: [digits_cnn]\noptimizers:\n  - name: adamw\n    search_space: {lr: {low: 1e-4, high: 1e-1, log: true}}\n",
    )
    assert load_suite(path).optimizers[0].search_space["lr"] == Float(1e-4, 1e-1, log=True)


def test_fixed_removes_covered_search_names(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.yaml",
        "tasks: [digits_cnn]\noptimizers:\n"
        "  - {name: sgd, fixed: {momentum: 0.8}}\n"
        "  - {name: lion, fixed: {beta1: 0.95}}\n"
        "  - {name: sgd, label: sgd_choice, search_space: {nesterov: {choices: [true, false]}}}\n",
    )
    sgd, lion, choice = load_suite(path).optimizers
    assert "one_minus_momentum" not in sgd.search_space and "lr" in sgd.search_space
    assert "one_minus_beta1" not in lion.search_space and "one_minus_beta2" in lion.search_space
    assert dict(choice.search_space) == {"nesterov": Categorical((True, False))}


def test_schedule_free_optimizers_get_a_constant_schedule(tmp_path: Path) -> None:
    flagged = [n for n, e in OPTIMIZERS.items() if e.flags & {"schedule_free", "no_schedule"}]
    assert "schedulefree_adamw" in flagged  # the zoo has one: this test must never skip silently
    name = flagged[0]
    path = write(
        tmp_path / "s.yaml",
        f"tasks: [digits_cnn]\noptimizers: [{name}, {{name: {name}, label: explicit, schedule: cosine}}]\n"
        "schedule: {name: cosine, warmup: 0.1}\n",
    )
    implicit, explicit = load_suite(path).optimizers
    assert (implicit.schedule.name, implicit.schedule.warmup) == ("constant", 0.0)
    assert (explicit.schedule.name, explicit.schedule.warmup) == ("cosine", 0.1)


def test_leaderboard_reference_defaults_to_first_label_without_adamw(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "tasks: [digits_cnn]\noptimizers: [lion, sgd]\n")
    assert load_suite(path).leaderboard.reference == "lion"


def test_error_in_included_item_names_the_include(tmp_path: Path) -> None:
    write(tmp_path / "parts" / "opts.yaml", "optimizers: [sgd, adamw, lino]\n")
    path = write(tmp_path / "s.yaml", "include: parts/opts.yaml\ntasks: [digits_cnn]\n")
    with pytest.raises(SpecError) as info:
        load_suite(path)
    assert info.value.file.endswith(os.path.join("parts", "opts.yaml"))
    assert info.value.key == "optimizers[2]"
    assert "Did you mean 'lion'?" in str(info.value)


def test_suite_replaces_included_lists(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "tasks: [digits_mlp, digits_cnn]\noptimizers: [sgd, adamw]\n")
    path = write(tmp_path / "s.yaml", "include: base.yaml\noptimizers: [lion]\n")
    suite = load_suite(path)
    assert [t.name for t in suite.tasks] == ["digits_mlp", "digits_cnn"]
    assert [o.label for o in suite.optimizers] == ["lion"]


def test_missing_suite_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such suite file"):
        load_suite(tmp_path / "nope.yaml")


def test_resolved_is_a_loadable_suite(tmp_path: Path) -> None:
    suite = load_suite(FIXTURES / "good" / "full.yaml")
    resolved = suite.resolved
    assert "include" not in resolved
    assert resolved["tasks"][1]["version"] == suite.tasks[1].entry.version
    assert resolved["optimizers"][1]["search_space"]["lr"] == {"low": 1e-3, "high": 1.0, "log": True}
    path = write(tmp_path / "full_example.yaml", yaml.safe_dump(resolved, sort_keys=False))
    again = load_suite(path)
    assert again.resolved == resolved
    assert again.optimizers == suite.optimizers and again.tasks == suite.tasks


def test_loaded_suite_is_frozen() -> None:
    suite = load_suite(FIXTURES / "good" / "full.yaml")
    with pytest.raises(ValidationError):
        suite.tuning.trials = 100  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        suite.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        suite.tasks[1].options["width"] = 3  # type: ignore[index]
    with pytest.raises(TypeError):
        suite.optimizers[1].fixed["momentum"] = 0.5  # type: ignore[index]
    with pytest.raises(TypeError):
        suite.optimizers[1].search_space["lr"] = Float(1, 2)  # type: ignore[index]


def test_loading_is_pure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """validate/plan must not create stores: loading writes nothing, neither beside the suite nor in cwd."""
    write(tmp_path / "benchmark.yaml", "tracking_uri: sqlite:///t.db\nstorage: sqlite:///.bench/o.db\n")
    write(tmp_path / "common.yaml", "tuning: {trials: 2}\n")
    path = write(tmp_path / "s.yaml", "include: common.yaml\ntasks: [digits_cnn]\noptimizers: [adamw]\n")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    load_suite(path)
    load_settings(tmp_path)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_user_optimizer_by_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "my_opts.py",
        "import torch\n\nclass MySGD(torch.optim.SGD):\n"
        "    def __init__(self, params, lr=0.1, whatever=1.0):\n"
        "        super().__init__(params, lr=lr)\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(
        tmp_path / "s.yaml",
        "tasks: [digits_cnn]\noptimizers:\n"
        "  - name: my_opts:MySGD\n    fixed: {whatever: 2.0}\n"
        "    search_space: {lr: {low: 1e-3, high: 1.0, log: true}, anything_goes: {low: 0, high: 1}}\n",
    )
    (opt,) = load_suite(path).optimizers
    assert opt.label == "MySGD" and opt.entry.name == "my_opts:MySGD"
    assert set(opt.search_space) == {"lr", "anything_goes"} and opt.fixed == {"whatever": 2.0}

    bad = write(tmp_path / "bad.yaml", "tasks: [digits_cnn]\noptimizers: [my_opts:Missing]\n")
    with pytest.raises(SpecError) as info:
        load_suite(bad)
    assert info.value.key == "optimizers[0]"
    assert "cannot use user optimizer 'my_opts:Missing'" in str(info.value)
    assert "has no attribute 'Missing'" in str(info.value)
    gone = write(
        tmp_path / "gone.yaml", "tasks: [digits_cnn]\noptimizers: [{name: no_such_pkg_xyz.mod:Opt}]\n"
    )
    with pytest.raises(SpecError) as info:
        load_suite(gone)
    assert info.value.key == "optimizers[0].name" and "no_such_pkg_xyz" in str(info.value)


# --------------------------------------------------------------------------------------------------
# Every problem at once; registries as an argument; no code run by validate; hostile files
# --------------------------------------------------------------------------------------------------


def test_three_independent_mistakes_give_three_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.yaml",
        "tasks: [digit_cnn]\noptimizers: [adamw, {name: sgd, ema: 2}]\ntuning: {trials: 0}\n",
    )
    with pytest.raises(SpecError) as info:
        load_suite(path)
    keys = sorted(p.key for p in info.value.problems)
    assert keys == ["optimizers[1].ema", "tasks[0]", "tuning.trials"]
    lines = str(info.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(str(path)) or "s.yaml" in line for line in lines)


def test_errors_in_an_include_and_the_suite_are_reported_together(tmp_path: Path) -> None:
    write(tmp_path / "parts" / "p.yaml", "tuning: {seeds: -1}\n")
    path = write(tmp_path / "s.yaml", "include: parts/p.yaml\ntasks: [digits_cnn]\noptimizers: [adamW]\n")
    with pytest.raises(SpecError) as info:
        load_suite(path)
    by_key = {p.key: p.file for p in info.value.problems}
    assert by_key["tuning.seeds"].endswith(os.path.join("parts", "p.yaml"))
    assert by_key["optimizers[0]"].endswith("s.yaml")


def test_resolver_takes_the_registries_as_an_argument(tmp_path: Path) -> None:
    from bench.catalog import REGISTRIES, Registries
    from bench.registry import Registry

    only_sgd = Registries(
        REGISTRIES.tasks, Registry("optimizer", entries=[OPTIMIZERS.get("sgd")]), REGISTRIES.schedules
    )
    path = write(tmp_path / "s.yaml", "tasks: [digits_cnn]\noptimizers: [sgd, adamw]\n")
    with pytest.raises(SpecError, match=r"optimizers\[1\]: Unknown optimizer 'adamw'.*Available: sgd$"):
        load_suite(path, registries=only_sgd)
    assert [o.label for o in load_suite(path).optimizers] == ["sgd", "adamw"]


SIDE_EFFECT = """
import pathlib, torch
pathlib.Path(__file__).with_name("imported.txt").write_text("ran")

class Opt(torch.optim.SGD):
    def __init__(self, params, lr=0.1):
        super().__init__(params, lr=lr)
"""


def test_validate_runs_no_code_a_suite_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.loader import check_suite

    write(tmp_path / "noisy_pkg" / "__init__.py", "raise RuntimeError('package code ran')\n")
    write(tmp_path / "noisy_pkg" / "opts.py", SIDE_EFFECT)
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path / "s.yaml", "tasks: [digits_cnn]\noptimizers: [adamw, noisy_pkg.opts:Opt]\n")
    found = check_suite(path, imports=False)
    assert found.suite is None and found.unresolved == ("noisy_pkg.opts:Opt",)
    assert not (tmp_path / "noisy_pkg" / "imported.txt").exists()
    # keys that name the unimported optimizer's label are not errors: its label is written, not imported
    gated = write(
        tmp_path / "g.yaml",
        "tasks: [digits_cnn]\noptimizers: [adamw, {name: 'noisy_pkg.opts:Opt', label: mine}]\n"
        "leaderboard: {reference: mine}\ncheck: {beat: adamw, beat_optimizers: [mine]}\n",
    )
    assert check_suite(gated, imports=False).unresolved == ("noisy_pkg.opts:Opt",)
    missing = write(tmp_path / "m.yaml", "tasks: [digits_cnn]\noptimizers: [noisy_pkg.nope:Opt]\n")
    with pytest.raises(SpecError, match="no module named 'noisy_pkg.nope' on the Python path"):
        check_suite(missing, imports=False)
    assert not (tmp_path / "noisy_pkg" / "imported.txt").exists()


def test_validate_and_plan_import_no_torch() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from bench.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['validate', *sys.argv[1:]]) == 0\n"
        "    assert main(['plan', 'suites/lm.yaml']) == 0\n"
        "heavy = [m for m in ('torch', 'lightning', 'mlflow', 'optuna', 'timm', 'datasets', 'pandas') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    shipped = [str(p.relative_to(REPO)) for p in SHIPPED]
    out = subprocess_run([sys.executable, "-c", code, *shipped])
    assert out.strip().splitlines()[-1] == "[]"


def test_the_command_lets_openmp_threads_sleep_before_torch_loads() -> None:
    """`bench` sets OMP_WAIT_POLICY=PASSIVE before anything imports torch (whose OpenMP reads it once,
    when it loads); a value the user set is kept."""
    import os
    import subprocess

    code = "import os, sys, bench.cli; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    run = [sys.executable, "-c", code]
    unset = subprocess.run(run, capture_output=True, text=True, cwd=REPO, env=env, check=True)
    assert unset.stdout.split() == ["PASSIVE", "False"]
    kept = subprocess.run(
        run, capture_output=True, text=True, cwd=REPO, env=env | {"OMP_WAIT_POLICY": "ACTIVE"}
    )
    assert kept.stdout.split() == ["ACTIVE", "False"]


def subprocess_run(cmd: list[str]) -> str:
    import subprocess

    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
            + "".join(
                f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
                for p, c in zip("abcdefgh", "bcdefghi", strict=True)
            )
            + "tasks: [digits_cnn]\n",
            "expands to more than 100,000 values",
        ),
        ("tasks: " + "[" * 200 + "]" * 200 + "\n", "nested more than 64 levels deep"),
        (
            "tasks: [digits_cnn]\noptimizers:\n  - {name: adamw, search_space: {lr: {low: .nan, high: 1.0}}}\n",
            "optimizers[0].search_space.lr.low: expected a finite number, got nan",
        ),
        (
            "tasks: [digits_cnn]\noptimizers: [adamw]\ntuning: {trials: 1000000000000}\n",
            "tuning.trials: must be <= 100000, got 1000000000000",
        ),
    ],
    ids=["alias_bomb", "deep_nesting", "nan", "huge_budget"],
)
def test_hostile_files_get_a_clear_error_fast(tmp_path: Path, text: str, message: str) -> None:
    import time

    path = write(tmp_path / "s.yaml", text)
    started = time.monotonic()
    with pytest.raises(SpecError) as info:
        load_suite(path)
    assert time.monotonic() - started < 5
    assert message in str(info.value)


BOUNDED = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB of address space at most
from bench.cli import main
for path in sys.argv[1:]:
    started = time.monotonic()
    code = main(["run", path])
    print(f"{path}\t{code}\t{time.monotonic() - started:.2f}", flush=True)
"""


def test_every_bad_suite_stops_bench_run_with_a_clear_error_fast_in_bounded_memory(tmp_path: Path) -> None:
    import subprocess

    before = {p: p.stat().st_mtime_ns for p in (FIXTURES / "bad").rglob("*")}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", BOUNDED, *map(str, BAD)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [r[0] for r in rows] == list(map(str, BAD))
    assert all(code == "2" and float(seconds) < 5 for _, code, seconds in rows), rows
    errors = done.stderr.splitlines()
    assert "Traceback" not in done.stderr and all(e.startswith(("error: ", "bench: ")) for e in errors)
    assert list(tmp_path.iterdir()) == []  # no store, no directory: nothing written
    assert {p: p.stat().st_mtime_ns for p in (FIXTURES / "bad").rglob("*")} == before


def test_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_bytes(b"tasks: [digits_cnn]\n\xff\xfe optimizers: [adamw]\n")
    with pytest.raises(SpecError, match=r"not UTF-8 text: byte 0xff at offset 20"):
        load_suite(path)


def test_a_huge_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("# padding\n" * 200_000)
    with pytest.raises(SpecError, match="a suite may be at most"):
        load_suite(path)


def test_suite_name_rule_does_not_contradict_itself(tmp_path: Path) -> None:
    path = write(tmp_path / "_try.yaml", "tasks: [digits_cnn]\noptimizers: [adamw]\n")
    with pytest.raises(
        SpecError, match=r"name: expected a letter or digit, then letters, digits, '_' or '-', got '_try'"
    ):
        load_suite(path)


def test_settings_device_is_the_default_accelerator(tmp_path: Path) -> None:
    path = write(tmp_path / "s.yaml", "tasks: [digits_cnn]\noptimizers: [adamw]\nsettings: {device: cpu}\n")
    assert load_suite(path).trainer.accelerator == "cpu"
    both = write(tmp_path / "t.yaml", "tasks: [digits_cnn]\noptimizers: [adamw]\nsettings: {device: cpu}\n"
                 "trainer: {accelerator: gpu}\n")  # fmt: skip
    assert load_suite(both).trainer.accelerator == "gpu"


def test_fsdp_is_refused_for_optimizers_without_the_flag(tmp_path: Path) -> None:
    text = "tasks: [digits_cnn]\ntrainer: {accelerator: gpu, devices: 1, strategy: fsdp}\noptimizers: [adamw, %s]\n"
    with pytest.raises(SpecError, match=r"optimizers\[1\]: 'muon' .* does not support FSDP") as e:
        load_suite(write(tmp_path / "s.yaml", text % "muon"))
    listed = str(e.value).split("flagged `fsdp`: ")[1].split(", ")
    assert "adamw" in listed and "sgd" in listed and "muon" not in listed
    assert listed == sorted(n for n, entry in OPTIMIZERS.items() if "fsdp" in entry.flags)
    load_suite(write(tmp_path / "ok.yaml", text % "lion"))


def test_closure_optimizers_refuse_gradient_accumulation(tmp_path: Path) -> None:
    text = "tasks: [digits_cnn]\noptimizers: [adamw, sam]\ntrainer: {accumulate_grad_batches: %d}\n"
    with pytest.raises(
        SpecError, match=r"(?s)optimizers\[1\]: 'sam' .*flag `closure`.*accumulate_grad_batches: 2"
    ):
        load_suite(write(tmp_path / "s.yaml", text % 2))
    assert load_suite(write(tmp_path / "ok.yaml", text % 1)).optimizers[1].entry.flags == {"closure"}


def test_a_global_batch_must_split_over_the_processes(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.yaml",
        "tasks: [{name: digits_cnn, batch_size: 30}, {name: digits_mlp, batch_size: 32}]\noptimizers: [adamw]\n"
        "trainer: {devices: 4}\n",
    )
    with pytest.raises(SpecError) as info:
        load_suite(path)
    assert [p.key for p in info.value.problems] == ["tasks[0].batch_size"]
    assert "30 does not split evenly over 4 processes" in str(info.value)
