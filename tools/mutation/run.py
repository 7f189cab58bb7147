"""`make mutate`: mutation testing of Verity's security core with cosmic-ray.

Each module listed in ``tools/mutation/config.toml`` is mutated one small change at a time
(cosmic-ray's operators plus Verity's in ``operators.py``), and each mutant is run against that
module's own fast tests (``pytest -x``). A mutant the tests fail on is killed; one they pass
on survived. The score is killed / (run - equivalent - incompetent).

Budget: a module can have thousands of mutants and each costs a pytest start (~2-3 s here), so
by default a seeded random sample of ``sample`` mutants per module is run (``--sample 0`` runs
every mutant). The sample is drawn per module from the seed and the module's path, so the same
code and seed give the same mutants. Mutants run in ``--jobs`` private copies of the working
tree (the tree itself is never touched), each with ``PYTHONPATH`` on its own ``src``.

Writes ``benchmarks/results/mutation.json`` (scores per module, merged with modules not run
this time) and ``benchmarks/results/mutation-survivors.txt`` (a diff per survivor).
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import json
import multiprocessing
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cosmic_ray.plugins
import verity_operators  # tools/mutation/, the script's own directory
from cosmic_ray.ast import ast_nodes, get_ast_from_path
from cosmic_ray.mutating import mutate_code, use_mutation
from cosmic_ray.testing import run_tests
from cosmic_ray.work_item import TestOutcome
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "tools" / "mutation" / "config.toml"
RESULTS = ROOT / "benchmarks" / "results"
PRAGMA = "pragma: no mutate"
SCHEMA = 1


@dataclass(frozen=True)
class Equivalent:
    operator: str
    line: str
    mutant: str
    reason: str


@dataclass(frozen=True)
class ModuleConfig:
    path: str
    tests: tuple[str, ...]
    equivalents: tuple[Equivalent, ...]


@dataclass(frozen=True)
class Settings:
    sample: int
    seed: int
    jobs: int
    operators: tuple[str, ...]
    modules: tuple[ModuleConfig, ...]


@dataclass
class Mutant:
    module: str
    operator: str
    occurrence: int
    line_no: int
    line: str = ""
    mutant: str = ""
    diff: str = ""
    outcome: str = "pending"  # killed | timeout | survived | equivalent | incompetent
    reason: str = ""
    seconds: float = 0.0


@dataclass
class ModuleResult:
    path: str
    tests: list[str]
    population: int = 0
    run: int = 0
    killed: int = 0
    timeout: int = 0
    survived: int = 0
    equivalent: int = 0
    incompetent: int = 0
    baseline_seconds: float = 0.0
    score: float | None = None
    survivors: list[dict[str, Any]] = field(default_factory=list)
    equivalents_unmatched: list[dict[str, str]] = field(default_factory=list)
    error: str = ""


class ConfigError(Exception):
    """The configuration file is wrong; the message says where."""


def load_settings(path: Path = CONFIG) -> Settings:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    general = raw.get("settings", {})
    modules = []
    for index, entry in enumerate(raw.get("module", [])):
        where = f"{path}: module #{index + 1}"
        if not isinstance(entry.get("path"), str) or not (ROOT / entry["path"]).is_file():
            raise ConfigError(f"{where}: path {entry.get('path')!r} is not a file in the repo")
        tests = entry.get("tests")
        if not tests or not all(isinstance(t, str) and (ROOT / t).exists() for t in tests):
            raise ConfigError(f"{where} ({entry['path']}): tests must list existing test files")
        equivalents = []
        for eq in entry.get("equivalent", []):
            missing = {"operator", "line", "mutant", "reason"} - set(eq)
            if missing or not str(eq.get("reason", "")).strip():
                raise ConfigError(
                    f"{where} ({entry['path']}): an equivalent entry lacks {sorted(missing)}"
                    " or has an empty reason"
                )
            equivalents.append(
                Equivalent(eq["operator"], eq["line"].strip(), eq["mutant"].strip(), eq["reason"])
            )
        modules.append(ModuleConfig(entry["path"], tuple(tests), tuple(equivalents)))
    return Settings(
        sample=int(general.get("sample", 40)),
        seed=int(general.get("seed", 0)),
        jobs=int(general.get("jobs", 2)),
        operators=tuple(general.get("operators", ())),
        modules=tuple(modules),
    )


def selected_operators(patterns: Sequence[str]) -> list[str]:
    """Every registered cosmic-ray operator name that a config pattern matches in full."""

    verity_operators.register()
    for name, operator in verity_operators.OPERATORS.items():
        for example in operator.examples():  # a broken operator would score nothing
            got = mutate_code(example.pre_mutation_code, operator(), example.occurrence)
            if got != example.post_mutation_code:
                raise ConfigError(f"operator verity/{name} fails its example: {example} -> {got!r}")
    names = cosmic_ray.plugins.operator_names()
    chosen = [n for n in names if any(re.fullmatch(p, n) for p in patterns)]
    unmatched = [p for p in patterns if not any(re.fullmatch(p, n) for n in names)]
    if unmatched:
        raise ConfigError(f"operator patterns match no operator: {unmatched}")
    return chosen


def enumerate_mutants(module: str, operator_names: Sequence[str]) -> list[Mutant]:
    """Every mutation cosmic-ray can make to the module, skipping `# pragma: no mutate` lines."""

    tree = get_ast_from_path(ROOT / module)
    lines = (ROOT / module).read_text(encoding="utf-8").splitlines()
    found: list[Mutant] = []
    for name in operator_names:
        operator = cosmic_ray.plugins.get_operator(name)()
        occurrence = 0
        for node in ast_nodes(tree):
            for start, _end in operator.mutation_positions(node):
                line_no = start[0]
                if PRAGMA not in lines[line_no - 1]:
                    found.append(Mutant(module, name, occurrence, line_no))
                occurrence += 1
    return found


def describe(mutant: Mutant, source: str) -> None:
    """Fill in the mutant's changed line(s) and diff, or mark it incompetent."""

    operator = cosmic_ray.plugins.get_operator(mutant.operator)()
    try:
        mutated = mutate_code(source, operator, mutant.occurrence)
    except Exception as exc:  # noqa: BLE001 - any failure to mutate is reported, not fatal
        mutant.outcome, mutant.reason = "incompetent", f"cannot mutate: {exc!r}"
        return
    if mutated is None:
        mutant.outcome, mutant.reason = "incompetent", "no mutation at this occurrence"
        return
    before, after = source.splitlines(), mutated.splitlines()
    removed: list[str] = []
    added: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after).get_opcodes():
        if tag != "equal":
            removed.extend(before[i1:i2])
            added.extend(after[j1:j2])
    mutant.line = " / ".join(s.strip() for s in removed)
    mutant.mutant = " / ".join(s.strip() for s in added)
    mutant.diff = "\n".join(
        difflib.unified_diff(
            before,
            after,
            f"a/{mutant.module}",
            f"b/{mutant.module}",
            n=1,
            lineterm="",
        )
    )


def sample_mutants(population: list[Mutant], size: int, seed: int, module: str) -> list[Mutant]:
    if size <= 0 or size >= len(population):
        return list(population)
    rng = random.Random(f"{seed}:{module}")  # noqa: S311 - a sample, not a secret
    return sorted(rng.sample(population, size), key=lambda m: (m.line_no, m.operator))


# ---- workers: each owns a private copy of the tree --------------------------------------


def make_copy(index: int) -> Path:
    """A private copy of the tracked and untracked-but-not-ignored files."""
    listing = subprocess.run(  # noqa: S603 - fixed argv, no input
        [
            shutil.which("git") or "git",
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    dest = Path(tempfile.mkdtemp(prefix=f"verity-mutate-{index}-"))
    for raw in listing:
        if not raw:
            continue
        rel = raw.decode()
        src = ROOT / rel
        if not src.is_file() or rel.startswith("benchmarks/results/"):
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def _init_worker(queue: Any) -> None:
    workdir = Path(queue.get())
    os.chdir(workdir)
    os.environ["PYTHONPATH"] = str(workdir / "src")
    os.environ.pop("VERITY_REQUIRE_SERVICES", None)

    verity_operators.register()


def _test_command(tests: Sequence[str]) -> str:
    return " ".join([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests])


def _run_baseline(tests: tuple[str, ...]) -> tuple[bool, float, str]:

    started = time.monotonic()
    outcome, output = run_tests(_test_command(tests), 600)
    return outcome == TestOutcome.SURVIVED, time.monotonic() - started, output[-3000:]


def _run_mutant(
    module: str, operator_name: str, occurrence: int, tests: tuple[str, ...], timeout: float
) -> tuple[str, float, str]:

    operator = cosmic_ray.plugins.get_operator(operator_name)()
    started = time.monotonic()
    with use_mutation(Path(module), operator, occurrence) as (_original, mutated):
        if mutated is None:
            return "incompetent", 0.0, "no mutation at this occurrence"
        outcome, output = run_tests(_test_command(tests), timeout)
    seconds = time.monotonic() - started
    if outcome == TestOutcome.SURVIVED:
        return "survived", seconds, ""
    if output == "timeout":
        return "timeout", seconds, ""
    if outcome == TestOutcome.INCOMPETENT:
        return "incompetent", seconds, output[-500:]
    return "killed", seconds, ""


# ---- the run ------------------------------------------------------------------------------


Plan = tuple[ModuleConfig, "ModuleResult", list[Mutant]]


def plan(settings: Settings, modules: Sequence[ModuleConfig], sample: int) -> list[Plan]:
    """The mutants to run per module: a seeded sample, described, equivalents marked."""
    operator_names = selected_operators(settings.operators)
    plans: list[Plan] = []
    for module in modules:
        result = ModuleResult(module.path, list(module.tests))
        population = enumerate_mutants(module.path, operator_names)
        result.population = len(population)
        chosen = sample_mutants(population, sample, settings.seed, module.path)
        source = (ROOT / module.path).read_text(encoding="utf-8")
        matched: set[Equivalent] = set()
        for mutant in chosen:
            describe(mutant, source)
            for eq in module.equivalents:
                if (eq.operator, eq.line, eq.mutant) == (
                    mutant.operator,
                    mutant.line,
                    mutant.mutant,
                ):
                    mutant.outcome, mutant.reason = "equivalent", eq.reason
                    matched.add(eq)
        if len(chosen) == len(population):
            result.equivalents_unmatched = [
                {"operator": eq.operator, "line": eq.line, "mutant": eq.mutant}
                for eq in module.equivalents
                if eq not in matched
            ]
        plans.append((module, result, chosen))
    return plans


def run(
    settings: Settings, modules: Sequence[ModuleConfig], sample: int, jobs: int
) -> list[ModuleResult]:
    console = Console(stderr=True)
    plans = plan(settings, modules, sample)
    copies = [make_copy(i) for i in range(jobs)]
    queue: Any = multiprocessing.get_context("fork").Queue()
    for copy in copies:
        queue.put(str(copy))
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init_worker,
        initargs=(queue,),
    )
    try:
        baselines = {m.path: pool.submit(_run_baseline, m.tests) for m, _r, _c in plans}
        todo = sum(1 for _m, _r, c in plans for x in c if x.outcome == "pending")
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            bar = progress.add_task("mutants", total=todo)
            pending: list[tuple[Mutant, Future[tuple[str, float, str]]]] = []
            for module, result, chosen in plans:
                ok, seconds, output = baselines[module.path].result()
                result.baseline_seconds = round(seconds, 2)
                if not ok:
                    result.error = "the module's tests fail without any mutation:\n" + output
                    console.print(f"[red]{module.path}: baseline failed[/red]\n{output}")
                    progress.advance(bar, sum(1 for m in chosen if m.outcome == "pending"))
                    continue
                timeout = max(15.0, seconds * 4 + 5)
                for mutant in chosen:
                    if mutant.outcome == "pending":
                        future = pool.submit(
                            _run_mutant,
                            mutant.module,
                            mutant.operator,
                            mutant.occurrence,
                            module.tests,
                            timeout,
                        )
                        future.add_done_callback(lambda _f: progress.advance(bar))
                        pending.append((mutant, future))
            for mutant, future in pending:
                mutant.outcome, mutant.seconds, mutant.reason = future.result()
        pool.shutdown()
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): drop the queued mutants, then clean
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for copy in copies:
            shutil.rmtree(copy, ignore_errors=True)

    results = []
    for _module, result, chosen in plans:
        for mutant in chosen:
            setattr(result, mutant.outcome, getattr(result, mutant.outcome) + 1)
        result.run = len(chosen)
        detected = result.killed + result.timeout
        scored = detected + result.survived
        result.score = round(100.0 * detected / scored, 1) if scored else None
        result.survivors = [
            {
                "operator": m.operator,
                "line_no": m.line_no,
                "line": m.line,
                "mutant": m.mutant,
                "diff": m.diff,
            }
            for m in chosen
            if m.outcome == "survived"
        ]
        results.append(result)
    return results


def cosmic_ray_version() -> str:

    return importlib.metadata.version("cosmic-ray")


def write_results(results: Sequence[ModuleResult], settings: Settings, sample: int) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "mutation.json"
    previous: dict[str, Any] = {}
    if out.is_file():
        try:
            previous = json.loads(out.read_text(encoding="utf-8")).get("modules", {})
        except (OSError, json.JSONDecodeError):
            previous = {}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    modules = dict(previous)
    for result in results:
        entry = asdict(result)
        entry.update({"measured_at": now, "sample": sample, "seed": settings.seed})
        modules[result.path] = entry
    scored = [m for m in modules.values() if m.get("score") is not None]
    detected = sum(m["killed"] + m["timeout"] for m in scored)
    total = detected + sum(m["survived"] for m in scored)
    document = {
        "schema": SCHEMA,
        "tool": f"cosmic-ray {cosmic_ray_version()} + tools/mutation/operators.py",
        "command": "make mutate",
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "updated_at": now,
        "total": {
            "detected": detected,
            "scored": total,
            "score": round(100.0 * detected / total, 1) if total else None,
            "lowest_module_score": min((m["score"] for m in scored), default=None),
        },
        "modules": dict(sorted(modules.items())),
    }
    out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    lines = []
    for result in results:
        for s in result.survivors:
            lines.append(f"# {result.path}:{s['line_no']} {s['operator']}\n{s['diff']}\n")
    (RESULTS / "mutation-survivors.txt").write_text("\n".join(lines), encoding="utf-8")
    return out


def print_table(results: Sequence[ModuleResult], show_survivors: bool) -> None:

    console = Console(width=max(100, shutil.get_terminal_size().columns))
    if show_survivors:
        for result in results:
            for s in result.survivors:
                print(f"# survived: {result.path}:{s['line_no']} {s['operator']}")
                print(s["diff"], flush=True)
    table = Table(title="mutation score: killed / (run - equivalent - incompetent)")
    table.add_column("module", no_wrap=True)
    for column in ("mutants", "run", "killed", "timeout", "survived", "equiv", "score"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in results:
        score = "baseline failed" if r.error else ("-" if r.score is None else f"{r.score:.1f}%")
        table.add_row(
            r.path.removeprefix("src/verity/"),
            str(r.population),
            str(r.run),
            str(r.killed),
            str(r.timeout),
            str(r.survived),
            str(r.equivalent),
            score,
        )
    console.print(table)
    for r in results:
        for eq in r.equivalents_unmatched:
            console.print(f"[yellow]{r.path}: equivalent entry matches no mutant: {eq}[/yellow]")


def select_modules(settings: Settings, wanted: Sequence[str]) -> list[ModuleConfig]:
    """The configured modules named on the command line (all when none are named)."""
    known = {m.path: m for m in settings.modules}
    paths = [m.removeprefix("./") for m in wanted]
    unknown = [m for m in paths if m not in known]
    if unknown:
        raise ConfigError(f"not in tools/mutation/config.toml: {unknown}; known: {sorted(known)}")
    return [known[m] for m in paths] if paths else list(settings.modules)


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through run(), which removes its copies


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    parser = argparse.ArgumentParser(
        prog="make mutate", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("modules", nargs="*", help="module paths (default: all in config.toml)")
    parser.add_argument("--sample", type=int, help="mutants per module, 0 = all")
    parser.add_argument("--jobs", type=int, help="parallel copies (default from config)")
    parser.add_argument("--fail-under", type=float, help="exit 1 if any module scores lower")
    parser.add_argument("--quiet", action="store_true", help="do not print survivor diffs")
    parser.add_argument("--list", action="store_true", help="list modules and mutant counts")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        modules = select_modules(settings, args.modules)
        if args.list:
            names = selected_operators(settings.operators)
            for module in modules:
                print(f"{module.path}: {len(enumerate_mutants(module.path, names))} mutants")
            return 0
        sample = settings.sample if args.sample is None else args.sample
        jobs = max(1, args.jobs or settings.jobs)
        started = time.monotonic()
        results = run(settings, modules, sample, jobs)
    except ConfigError as exc:
        print(f"make mutate: {exc}", file=sys.stderr)
        return 2
    out = write_results(results, settings, sample)
    print_table(results, show_survivors=not args.quiet)
    print(f"{out.relative_to(ROOT)} written in {time.monotonic() - started:.0f} s")
    if any(r.error for r in results):
        return 1
    if args.fail_under is not None and any(
        r.score is not None and r.score < args.fail_under for r in results
    ):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
