"""`bench` command line: parsing only; the work happens in spec, plan, engine, report and check.

    bench run suites/quickstart.yaml            train, tune, record, rank (resumes what is recorded)
    bench validate suites/*.yaml                check suites without touching anything
    bench plan suites/lm.yaml                   the expanded studies and a cost estimate
    bench ls [tasks|optimizers|schedules]       what the registries hold
    bench leaderboard suites/quickstart.yaml    rebuild results/<suite>.* from MLflow
    bench check suite.yaml --baseline F.json    gate CI on regressions against a pinned leaderboard (exit 0/1/2/3)
    bench ui                                    the MLflow UI on this suite's store, on 127.0.0.1
    bench standins [DIR]                        offline stand-ins for C4, CIFAR-10, ImageNet (no hub)
    bench schema [-o FILE]                      the JSON Schema of suite files (editor completion)

Every command that reads a suite takes `--set key.path=value` overrides (e.g. `--set tuning.trials=2`).
Imports are deferred by command: `validate`, `plan`, `ls` and `schema` load no torch, Lightning, Optuna
or MLflow, so they answer at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

# Before torch is imported (by the commands that train): OpenMP's idle threads sleep instead of
# spinning. With GNU OpenMP's default (active waiting), torch's intra-op threads spin between parallel
# regions, and on a machine whose cores are shared with other work a spinning thread holds a core that
# the thread doing the work needs: a tiny GPT step on 2 threads measured 0.66-0.83 s against 0.17 s on
# one, which is how a 150-step quickstart trial can take 140 s instead of 20. Passive: 0.18-0.19 s on the
# same loaded machine. Results do not change (the same threads split the same work). A value set in
# the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from bench.listing import list_registry  # noqa: E402
from bench.loader import check_suite, load_settings, load_suite, parse_overrides  # noqa: E402
from bench.plan import format_plan, make_plan  # noqa: E402
from bench.registry import UnknownNameError  # noqa: E402
from bench.schema import suite_json_schema  # noqa: E402
from bench.spec import SpecError  # noqa: E402


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out = parse_overrides(getattr(args, "set", None) or [])
    flags = {"trials": "tuning.trials", "protocol": "tuning.protocol",
             "tracking_uri": "settings.tracking_uri", "storage": "settings.storage"}  # fmt: skip
    for flag, key in flags.items():
        if getattr(args, flag, None) is not None:
            out[key] = getattr(args, flag)
    return out


def _load(path: str, args: argparse.Namespace) -> Any:
    from bench.faults import stores

    suite = load_suite(path, _overrides(args))
    args.stores = stores(suite.settings)  # named in the message if one turns out damaged or full
    return suite


def cmd_validate(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.suites:
        try:
            found = check_suite(path, _overrides(args), imports=args.imports)
        except SpecError as exc:
            _errors(exc)
            failed += 1
            continue
        if found.suite is None:
            names = ", ".join(found.unresolved)
            print(f"ok: {path}: found but did not import {names} (validate runs no code a suite names; "
                  "`bench validate --import` or `bench run` checks them)")  # fmt: skip
            continue
        plan = make_plan(found.suite)
        print(
            f"ok: {path}: suite '{found.suite.name}', {len(plan.studies)} studies, "
            f"{'up to ' if plan.estimate.extension else ''}{plan.estimate.runs} trials"
        )
    return 2 if failed else 0


def cmd_plan(args: argparse.Namespace) -> int:
    print(format_plan(make_plan(_load(args.suite, args))))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench import preflight

    suite = _load(args.suite, args)
    preflight.check(suite, leaderboard=not args.no_leaderboard)  # before the heavy imports: at once
    from bench.engine import run_suite

    progress = False if args.quiet_bars else None
    run_suite(suite, workers=args.workers, progress=progress, leaderboard=not args.no_leaderboard)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from bench.preflight import check
    from bench.report import build_leaderboard

    suite = _load(args.suite, args)
    check(suite, stores=False)
    paths = build_leaderboard(suite)
    return 0 if paths else 1


def cmd_check(args: argparse.Namespace) -> int:
    """Exit 0 passed, 1 a gate failed, 2 the check could not be made as asked, 3 bench failed."""
    from bench.check import EXIT_CRASH, run_check
    from bench.engine import SuiteConflict

    suite = _load(args.suite, args)
    baseline = Path(args.baseline) if args.baseline else None
    try:
        return run_check(suite, baseline, rerun=args.rerun, summary=args.summary, junit=args.junit)
    except (SpecError, UnknownNameError, SuiteConflict, KeyboardInterrupt):
        raise  # usage errors and interruptions: `main` words them and exits 2 or 130
    except Exception:
        traceback.print_exc()
        print(
            f"bench check: bench itself failed (exit {EXIT_CRASH}); this is not a verdict on the results",
            file=sys.stderr,
        )
        return EXIT_CRASH


def cmd_ls(args: argparse.Namespace) -> int:
    print(list_registry(args.what))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(suite_json_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
        print(f"bench: suite schema written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from bench.track import UI_HOST, UI_PORT, ui_links

    uri = args.tracking_uri
    if uri is None:
        uri = load_settings(Path.cwd())[0].tracking_uri
    host, port = args.host or UI_HOST, args.port or UI_PORT
    cmd = ["mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    base = f"http://{host}:{port}"
    print(f"bench: MLflow UI on {base} for {uri}", flush=True)
    for suite, links in ui_links(uri, base).items():  # straight to the suite, in the Model training view
        print(f"  {suite}: runs {links['runs']}", flush=True)
        if "leaderboard" in links:
            print(f"  {' ' * len(suite)}  leaderboard {links['leaderboard']}", flush=True)
    os.execvp(cmd[0], cmd)
    return 0


def cmd_standins(args: argparse.Namespace) -> int:
    from bench.workloads import standins

    if Path(args.dir).exists() and not Path(args.dir).is_dir():
        print(f"error: {args.dir} exists and is not a directory", file=sys.stderr)
        return 2
    print(f"bench: writing offline stand-ins under {args.dir}/ (existing ones are kept unless --force)")
    standins.write_standins(args.dir, args.seed, force=args.force)
    for line in standins.describe(args.dir):
        print(f"  {line}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench", description="A declarative benchmark suite for deep-learning optimizers."
    )
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--set", action="append", metavar="KEY=VALUE", help="override a suite key, e.g. tuning.trials=2"
        )
        sp.add_argument("--trials", type=int, help="trials per study (tuning.trials)")
        sp.add_argument("--protocol", help="tuning protocol: random, qmc, tpe, cmaes, grid, sweep, defaults")
        sp.add_argument("--tracking-uri", help="MLflow tracking URI (settings.tracking_uri)")
        sp.add_argument("--storage", help="Optuna storage URL (settings.storage)")

    r = command("run", "run a suite: tune, train, record, rank")
    r.add_argument("suite")
    common(r)
    r.add_argument(
        "--workers", type=int, default=1, help="worker processes on this machine sharing the studies"
    )
    r.add_argument("--no-leaderboard", action="store_true", help="skip building the leaderboard at the end")
    r.add_argument("--quiet-bars", action="store_true", help="no live display, one line per trial")
    r.set_defaults(func=cmd_run)

    v = command("validate", "check suites; touches nothing and runs no code a suite names")
    v.add_argument("suites", nargs="+")
    v.add_argument(
        "--import", dest="imports", action="store_true",
        help="also import the tasks and optimizers a suite names by import path (package.module:Name) and check them",
    )  # fmt: skip
    common(v)
    v.set_defaults(func=cmd_validate)

    pl = command("plan", "show studies, trials and a cost estimate; touches nothing")
    pl.add_argument("suite")
    common(pl)
    pl.set_defaults(func=cmd_plan)

    lb = command("leaderboard", "rebuild the leaderboard (results/<suite>.*) from MLflow")
    lb.add_argument("suite")
    common(lb)
    lb.set_defaults(func=cmd_leaderboard)

    c = command(
        "check",
        "gate CI: compare a run with a baseline leaderboard (quality, speed, memory) and/or require beating "
        "a reference optimizer (check.beat); exit 0 passed, 1 a gate failed, 2 usage error, 3 bench failed",
    )
    c.add_argument("suite")
    c.add_argument("--baseline", help="a leaderboard JSON, e.g. leaderboards/smoke.json")
    c.add_argument("--rerun", action="store_true", help="run the suite first (else read recorded trials)")
    c.add_argument("--summary", help="also append the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    c.add_argument("--junit", help="also write a JUnit XML report here, for CI test reports")
    common(c)
    c.set_defaults(func=cmd_check)

    ls = command("ls", "list tasks, optimizers or schedules")
    ls.add_argument("what", nargs="?", default="all", choices=["all", "tasks", "optimizers", "schedules"])
    ls.set_defaults(func=cmd_ls)

    si = command(
        "standins",
        "write offline stand-ins for C4, CIFAR-10 and ImageNet in the hub datasets' layouts (~30 MB, ~30 s; "
        "see suites/cpu.yaml and bench/workloads/standins.py)",
    )
    si.add_argument("dir", nargs="?", default="data/standins", help="where to write (default data/standins)")
    si.add_argument(
        "--seed", type=int, default=0, help="seed of the renders and the document split (default 0)"
    )
    si.add_argument("--force", action="store_true", help="rewrite stand-ins that already exist")
    si.set_defaults(func=cmd_standins)

    sc = command("schema", "print the JSON Schema of suite files (for editors: yaml-language-server)")
    sc.add_argument("-o", "--output", help="write it to this file instead of stdout")
    sc.set_defaults(func=cmd_schema)

    ui = command("ui", "start the MLflow UI (127.0.0.1 by default) and print each suite's links")
    ui.add_argument("--host", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, help="default 5000")
    ui.add_argument("--tracking-uri", help="MLflow store (default: tracking_uri of benchmark.yaml)")
    ui.set_defaults(func=cmd_ui)
    return p


def _errors(exc: SpecError) -> None:
    """Every problem of a suite, one `error:` line each."""
    for problem in exc.problems:
        print(f"error: {problem.line}", file=sys.stderr)
    if len(exc.problems) > 1:
        print(f"bench: {len(exc.problems)} problems", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecError as exc:
        _errors(exc)
        return 2
    except UnknownNameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:
        from bench.faults import explain

        if type(exc).__name__ in ("SuiteConflict", "LockTimeout"):  # engine's and locks' (not imported here)
            print(f"error: {exc}", file=sys.stderr)
            return 2
        message = explain(exc, getattr(args, "stores", {}))
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
