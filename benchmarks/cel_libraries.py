"""Compare the CEL (Common Expression Language) libraries on PyPI side by side.

Verity's policy language evaluates its ``when:`` clauses with a CEL library. This
standalone script checks, for every candidate that is importable here:

* spec coverage: a fixed set of expressions over a zero-trust style activation
  (``principal``, ``resource``, ``request``, ``device``, ``network``), pass/fail each;
* compile-time error reporting (syntax error, undeclared variable);
* speed: median microseconds per evaluation of three representative policies, both
  end to end (Python dict in, Python value out) and with the activation converted
  to the library's own value types once, ahead of time;
* reuse of one compiled program from several threads at once.

Candidates (PyPI name -> import name):

* ``cel-expr-python``            -> ``cel_expr_python.cel`` (Google's cel-cpp, pybind11)
* ``common-expression-language`` -> ``cel`` (Rust ``cel`` crate, PyO3)
* ``cel-python``                 -> ``celpy`` (pure Python; two runners measured)

A library that is not installed is skipped with a printed note. Results go to
``benchmarks/results/cel_libraries.json``.

Usage::

    python benchmarks/cel_libraries.py [--quick] [--only LABEL] [--output PATH]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import functools
import gc
import importlib
import importlib.metadata
import json
import logging
import platform
import re
import statistics
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Final

VARIABLES: Final = ("principal", "resource", "request", "device", "network")
DEFAULT_OUTPUT: Final = Path(__file__).resolve().parent / "results" / "cel_libraries.json"

REQUEST_TIME: Final = dt.datetime(2024, 6, 1, 10, 30, tzinfo=dt.UTC)  # a Saturday


def make_activation() -> dict[str, Any]:
    """A realistic request context: nested maps/lists of str/int/bool/float/timestamp."""
    return {
        "principal": {
            "id": "u1",
            "email": "alice@example.com",
            "groups": ["admins", "eng", "oncall", "sre-team", "staff"],
            "claims": {
                "department": "sec",
                "level": 3,
                "mfa": True,
                "amr": ["pwd", "hwk"],
                "auth_time": REQUEST_TIME - dt.timedelta(minutes=20),
            },
            "score": 0.87,
        },
        "resource": {
            "id": "doc-42",
            "owner": "u1",
            "path": "/api/v1/users/42",
            "size": 1024,
            "attributes": {
                "department": "sec",
                "classification": "internal",
                "labels": {"env": "prod"},
            },
        },
        "request": {
            "method": "GET",
            "ip": "10.0.0.5",
            "time": REQUEST_TIME,
            "headers": {"user-agent": "curl/8.5", "x-request-id": "abc123"},
        },
        "device": {
            "id": "dev-9",
            "os": "macos",
            "os_version": 14,
            "managed": True,
            "posture": {"disk_encrypted": True, "firewall": True, "score": 92.5},
        },
        "network": {"zone": "corp", "risk": 0.2, "tor": False},
    }


class _ExpectError:
    """Sentinel: the expression must fail at evaluation time."""

    def __repr__(self) -> str:
        return "ERROR"


EXPECT_ERROR: Final = _ExpectError()


@dataclass(frozen=True)
class Case:
    name: str
    expr: str
    expected: object


CASES: Final[tuple[Case, ...]] = (
    Case("arith_int", "principal.claims.level * 2 + 1 == 7 && -principal.claims.level == -3", True),
    Case("int_div_truncates", "7 / 2 == 3 && 7 % 2 == 1 && -7 / 2 == -3", True),
    Case("arith_double", "principal.score * 100.0 > 80.0 && 1.0 / 2.0 == 0.5", True),
    Case(
        "str_starts_ends",
        "resource.path.startsWith('/api/') && resource.path.endsWith('/42')",
        True,
    ),
    Case(
        "str_contains_concat",
        "resource.path.contains('users') && principal.id + '@corp' == 'u1@corp'",
        True,
    ),
    Case(
        "str_matches_regex",
        r"request.ip.matches('^10\\.0\\.[0-9]+\\.[0-9]+$') && !principal.id.matches('^adm')",
        True,
    ),
    Case(
        "size_str_list_map",
        "size(principal.groups) == 5 && size('h\u00e9llo') == 5"
        " && size(resource.attributes.labels) == 1 && principal.groups.size() == 5",
        True,
    ),
    Case("in_list", "'admins' in principal.groups && !('root' in principal.groups)", True),
    Case(
        "in_map",
        "'env' in resource.attributes.labels && !('team' in resource.attributes.labels)",
        True,
    ),
    Case("has_present", "has(principal.claims.department) && has(device.posture)", True),
    Case("has_absent", "!has(principal.claims.manager)", True),
    Case("macro_all", "principal.groups.all(g, size(g) > 2)", True),
    Case("macro_exists", "principal.groups.exists(g, g == 'eng')", True),
    Case(
        "macro_exists_one",
        "principal.groups.exists_one(g, g.startsWith('a')) && ![1, 1].exists_one(x, x == 1)",
        True,
    ),
    Case(
        "macro_filter",
        "principal.groups.filter(g, g.startsWith('s')) == ['sre-team', 'staff']",
        True,
    ),
    Case("macro_map", "[1, 2, 3].map(x, x * 2) == [2, 4, 6]", True),
    Case("macro_over_map_keys", "request.headers.exists(k, k.startsWith('x-'))", True),
    Case("ternary", "(device.managed ? 'trusted' : 'untrusted') == 'trusted'", True),
    Case(
        "timestamp_compare",
        "request.time > timestamp('2024-01-01T00:00:00Z')"
        " && principal.claims.auth_time < request.time",
        True,
    ),
    Case(
        "duration_arith",
        "request.time - principal.claims.auth_time < duration('1h')"
        " && duration('1h') == duration('60m')"
        " && request.time + duration('90m') == timestamp('2024-06-01T12:00:00Z')",
        True,
    ),
    Case(
        "get_hours_utc", "request.time.getHours() == 10 && request.time.getDayOfWeek() == 6", True
    ),
    Case(
        "get_hours_timezone",
        "request.time.getHours('Europe/Berlin') == 12"
        " && request.time.getHours('America/New_York') == 6",
        True,
    ),
    Case(
        "conversions",
        "int('42') == 42 && uint(42) == 42u && double(3) == 3.0 && int(3.9) == 3"
        " && string(42) == '42' && double('2.5') == 2.5",
        True,
    ),
    Case(
        "heterogeneous_equality",
        "principal.claims.level == 3.0 && principal.claims.level == 3u"
        " && principal.claims.level != 'three'",
        True,
    ),
    Case(
        "cross_type_ordering", "principal.claims.level < 3.5 && principal.claims.level > 2u", True
    ),
    Case(
        "nested_field_access",
        "device.posture.disk_encrypted && resource.attributes.labels.env == 'prod'"
        " && resource.attributes['department'] == principal.claims['department']",
        True,
    ),
    Case("missing_key_is_error", "principal.claims.manager == 'bob'", EXPECT_ERROR),
    Case(
        "has_guards_missing_key",
        "has(principal.claims.manager) && principal.claims.manager == 'bob'",
        False,
    ),
    Case("short_circuit_and", "false && (1 / 0 == 1)", False),
    Case("short_circuit_or", "true || (1 / 0 == 1)", True),
    Case("error_absorbed_commutative_or", "principal.claims.manager == 'bob' || true", True),
    Case("type_error_is_error", "principal.id + 1 == 2", EXPECT_ERROR),
    Case("int_overflow_is_error", "9223372036854775807 + principal.claims.level > 0", EXPECT_ERROR),
    Case("index_out_of_range_is_error", "principal.groups[7] == 'x'", EXPECT_ERROR),
    Case("division_by_zero_is_error", "principal.claims.level / 0 == 1", EXPECT_ERROR),
)

SPEED_EXPRESSIONS: Final[dict[str, str]] = {
    "owner_admin": "'admins' in principal.groups && resource.owner == principal.id",
    "dept_method": (
        "principal.claims.department == resource.attributes.department"
        " && request.method in ['GET', 'HEAD']"
    ),
    "device_groups": "device.os == 'macos' && size(principal.groups) > 1",
}

COMPILE_ERROR_PROBES: Final[dict[str, str]] = {
    "syntax_error": "principal.id == && resource.owner",
    "undeclared_variable": "princpal.id == resource.owner",
}

THREAD_CHECK_EXPR: Final = "principal.id == resource.owner && principal.n * 2 == resource.n2"

_POSITION_RE: Final = re.compile(r":\d+:\d+|line \d+|col(?:umn)? \d+", re.IGNORECASE)


_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SCALARS: Final = frozenset({str, int, float, bool, bytes, type(None)})


class CelEvalFailure(Exception):
    """Raised by this harness for libraries that return error values instead of raising."""


class Backend(ABC):
    """One CEL library behind a common compile/convert/evaluate interface."""

    label: str
    dist: str
    module_name: str

    @abstractmethod
    def compile(self, expr: str) -> Any:
        """Parse (and type-check, where supported) an expression once."""

    @abstractmethod
    def convert(self, activation: Mapping[str, Any]) -> Any:
        """Turn a plain Python activation into the library's own activation object."""

    @abstractmethod
    def run(self, program: Any, converted: Any) -> Any:
        """Evaluate with a pre-converted activation; return a Python value or raise."""

    def run_dict(self, program: Any, activation: Mapping[str, Any]) -> Any:
        """Evaluate straight from a Python dict (conversion included)."""
        return self.run(program, self.convert(activation))

    def version(self) -> str:
        return importlib.metadata.version(self.dist)

    def notes(self) -> list[str]:
        return []

    def extra_timings(
        self, program: Any, activation: Mapping[str, Any]
    ) -> dict[str, Callable[[], object]]:
        """Library-specific variants worth timing (label -> zero-argument callable)."""
        del program, activation
        return {}


class CelExprPythonBackend(Backend):
    """``cel-expr-python``: Google's cel-cpp through pybind11 (module ``cel_expr_python.cel``)."""

    label = "cel-expr-python"
    dist = "cel-expr-python"
    module_name = "cel_expr_python.cel"

    def __init__(self) -> None:
        self.cel: ModuleType = importlib.import_module(self.module_name)
        dyn_map = self.cel.Type.Map(self.cel.Type.STRING, self.cel.Type.DYN)
        self.env: Any = self.cel.NewEnv(variables=dict.fromkeys(VARIABLES, dyn_map))
        self.error_type: Any = self.cel.Type.ERROR
        # Inside a map(string, dyn) a Python datetime/timedelta is rejected ("Non-CEL value
        # type"); the well-known protobuf messages are accepted and behave as CEL
        # timestamp/duration values.
        self._timestamp_cls: Any = None
        self._duration_cls: Any = None
        try:
            self._timestamp_cls = importlib.import_module("google.protobuf.timestamp_pb2").Timestamp
            self._duration_cls = importlib.import_module("google.protobuf.duration_pb2").Duration
        except ImportError:
            pass

    def notes(self) -> list[str]:
        if self._timestamp_cls is None:
            return ["protobuf not installed: datetime values cannot be passed inside maps"]
        return [
            "datetime/timedelta inside maps passed as google.protobuf Timestamp/Duration",
            "Activation() converts lazily on first evaluation: see conversion_overhead",
        ]

    def _prepare(self, value: Any) -> Any:
        kind = type(value)
        if kind in _SCALARS:
            return value
        if kind is dict:
            prepare = self._prepare
            return {k: prepare(v) for k, v in value.items()}
        if kind is list or kind is tuple:
            prepare = self._prepare
            return [prepare(v) for v in value]
        if isinstance(value, dt.datetime) and self._timestamp_cls is not None:
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)  # naive datetimes are taken as UTC
            delta = value - _EPOCH
            return self._timestamp_cls(
                seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000
            )
        if isinstance(value, dt.timedelta) and self._duration_cls is not None:
            return self._duration_cls(
                seconds=value.days * 86_400 + value.seconds, nanos=value.microseconds * 1000
            )
        return value

    def compile(self, expr: str) -> Any:
        return self.env.compile(expr)

    def extra_timings(
        self, program: Any, activation: Mapping[str, Any]
    ) -> dict[str, Callable[[], object]]:
        # If the caller builds its context with protobuf Timestamp/Duration values already,
        # the Python-side walk disappears; Activation() itself converts lazily, on first use.
        prepared = self._prepare(activation)
        return {
            "end_to_end_without_walk": lambda: self._unwrap(program.eval(data=prepared)),
            "end_to_end_via_activation": lambda: self._unwrap(
                program.eval(self.env.Activation(prepared))
            ),
        }

    def convert(self, activation: Mapping[str, Any]) -> Any:
        return self.env.Activation(self._prepare(activation))

    def _unwrap(self, value: Any) -> Any:
        if value.type() == self.error_type:
            raise CelEvalFailure(str(value.value()))
        return value.plain_value()

    def run(self, program: Any, converted: Any) -> Any:
        return self._unwrap(program.eval(converted))

    def run_dict(self, program: Any, activation: Mapping[str, Any]) -> Any:
        return self._unwrap(program.eval(data=self._prepare(activation)))


class CommonExpressionLanguageBackend(Backend):
    """``common-expression-language``: the Rust ``cel`` crate through PyO3 (module ``cel``)."""

    label = "common-expression-language"
    dist = "common-expression-language"
    module_name = "cel"

    def __init__(self) -> None:
        self.cel: ModuleType = importlib.import_module(self.module_name)

    def compile(self, expr: str) -> Any:
        return self.cel.compile(expr)

    def convert(self, activation: Mapping[str, Any]) -> Any:
        return self.cel.Context(variables=dict(activation))

    def run(self, program: Any, converted: Any) -> Any:
        return program.execute(converted)

    def run_dict(self, program: Any, activation: Mapping[str, Any]) -> Any:
        return program.execute(activation)


class CelPythonBackend(Backend):
    """``cel-python``: pure Python (module ``celpy``), with a choice of runner."""

    dist = "cel-python"
    module_name = "celpy"
    # celpy caches one Lark parser per process (CELParser.CEL_PARSER) built for the tree
    # class of the first Environment; the two runners need different tree classes.
    _parser_owner: ClassVar[str | None] = None

    def __init__(self, runner: str) -> None:
        self.celpy: ModuleType = importlib.import_module(self.module_name)
        logging.getLogger("celpy").setLevel(logging.CRITICAL)  # CompiledRunner logs every error
        self.runner = runner
        self.label = "cel-python" if runner == "InterpretedRunner" else f"cel-python[{runner}]"
        self.env: Any = None

    def notes(self) -> list[str]:
        if self.runner == "CompiledRunner":
            return ["CompiledRunner keeps evaluation state in module globals (not thread-safe)"]
        return []

    def _environment(self) -> Any:
        if CelPythonBackend._parser_owner != self.label or self.env is None:
            self.celpy.celparser.CELParser.CEL_PARSER = None
            self.env = self.celpy.Environment(runner_class=getattr(self.celpy, self.runner))
            CelPythonBackend._parser_owner = self.label
        return self.env

    def compile(self, expr: str) -> Any:
        env = self._environment()
        return env.program(env.compile(expr))

    def convert(self, activation: Mapping[str, Any]) -> Any:
        to_cel = self.celpy.json_to_cel
        return {name: to_cel(value) for name, value in activation.items()}

    def run(self, program: Any, converted: Any) -> Any:
        return program.evaluate(converted)


BACKEND_FACTORIES: Final[tuple[tuple[str, str, Callable[[], Backend]], ...]] = (
    ("cel-expr-python", "cel_expr_python.cel", CelExprPythonBackend),
    ("common-expression-language", "cel", CommonExpressionLanguageBackend),
    ("cel-python", "celpy", lambda: CelPythonBackend("InterpretedRunner")),
    ("cel-python[CompiledRunner]", "celpy", lambda: CelPythonBackend("CompiledRunner")),
)


def describe_exception(exc: BaseException) -> dict[str, Any]:
    message = str(exc)
    line = getattr(exc, "line", None)
    column = getattr(exc, "column", None)
    return {
        "class": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": message[:400],
        "position_attrs": None if line is None else {"line": line, "column": column},
        "position_in_message": bool(_POSITION_RE.search(message)),
    }


def run_coverage(backend: Backend, activation: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for case in CASES:
        entry: dict[str, Any] = {"expected": repr(case.expected)}
        try:
            program = backend.compile(case.expr)
        except Exception as exc:  # noqa: BLE001 - the harness records every failure
            entry |= {"pass": False, "stage": "compile", "error": describe_exception(exc)}
            results[case.name] = entry
            continue
        try:
            got = backend.run_dict(program, activation)
        except Exception as exc:  # noqa: BLE001 - the harness records every failure
            entry |= {"pass": case.expected is EXPECT_ERROR, "stage": "evaluate"}
            entry["error"] = describe_exception(exc)
        else:
            ok = case.expected is not EXPECT_ERROR and bool(got == case.expected)
            entry |= {"pass": ok, "stage": "evaluate", "got": repr(got)[:200]}
        results[case.name] = entry
    return results


def probe_compile_errors(backend: Backend) -> dict[str, dict[str, Any]]:
    probes: dict[str, dict[str, Any]] = {}
    for name, expr in COMPILE_ERROR_PROBES.items():
        try:
            backend.compile(expr)
        except Exception as exc:  # noqa: BLE001 - the harness records every failure
            probes[name] = {"raised_at_compile": True, **describe_exception(exc)}
        else:
            probes[name] = {"raised_at_compile": False}
    return probes


@dataclass(frozen=True)
class Timing:
    repeats: int
    target_ns: int


def _per_call_ns(fn: Callable[[], object], loops: int) -> float:
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter_ns() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / loops


def median_us(fn: Callable[[], object], timing: Timing) -> float:
    """Median over repeats of the mean time per call, in microseconds."""
    fn()  # warm up (and fail fast)
    loops = 1
    while True:
        elapsed = _per_call_ns(fn, loops) * loops
        if elapsed >= timing.target_ns / 10 or loops >= 1 << 22:
            break
        loops *= 2
    loops = max(1, int(loops * timing.target_ns / max(elapsed, 1.0)))
    samples = [_per_call_ns(fn, loops) for _ in range(timing.repeats)]
    return round(statistics.median(samples) / 1000, 3)


def _check_speed_result(
    backend: Backend, program: Any, converted: Any, activation: Mapping[str, Any]
) -> None:
    result = backend.run(program, converted)
    if result != backend.run_dict(program, activation) or not result:
        msg = f"unexpected result {result!r} (every speed expression should be true)"
        raise CelEvalFailure(msg)


def run_speed(
    backend: Backend, activation: Mapping[str, Any], timing: Timing
) -> dict[str, dict[str, Any]]:
    speed: dict[str, dict[str, Any]] = {}
    for name, expr in SPEED_EXPRESSIONS.items():
        try:
            program = backend.compile(expr)
            converted = backend.convert(activation)
            _check_speed_result(backend, program, converted, activation)
            detail: dict[str, Any] = {
                "end_to_end": median_us(
                    functools.partial(backend.run_dict, program, activation), timing
                ),
                "preconverted": median_us(
                    functools.partial(backend.run, program, converted), timing
                ),
                "convert_only": median_us(functools.partial(backend.convert, activation), timing),
                "compile": median_us(
                    functools.partial(backend.compile, expr), Timing(3, 20_000_000)
                ),
            }
            detail["conversion_overhead"] = round(detail["end_to_end"] - detail["preconverted"], 3)
            for label, fn in backend.extra_timings(program, activation).items():
                detail[label] = median_us(fn, timing)
            speed[name] = detail
        except Exception as exc:  # noqa: BLE001 - the harness records every failure
            speed[name] = {"error": describe_exception(exc)}
    return speed


def request_scenario_us(
    backend: Backend, activation: Mapping[str, Any], timing: Timing
) -> float | None:
    """One request: convert the activation once, then evaluate all speed expressions."""
    try:
        programs = [backend.compile(expr) for expr in SPEED_EXPRESSIONS.values()]

        def one_request() -> list[Any]:
            converted = backend.convert(activation)
            return [backend.run(program, converted) for program in programs]

        return median_us(one_request, timing)
    except Exception as exc:  # noqa: BLE001 - the harness records every failure
        print(f"   request scenario failed: {describe_exception(exc)['message'][:100]}")
        return None


def _thread_activation(n: int) -> dict[str, Any]:
    return {
        "principal": {"id": f"u{n}", "n": n},
        "resource": {"owner": f"u{n}" if n % 3 else "someone-else", "n2": 2 * n},
    }


def thread_check(backend: Backend, evaluations: int, threads: int = 8) -> dict[str, Any]:
    """Share one compiled program between threads; count wrong answers."""
    program = backend.compile(THREAD_CHECK_EXPR)

    def one(n: int) -> bool:
        try:
            return bool(backend.run_dict(program, _thread_activation(n)) == (n % 3 != 0))
        except Exception:  # noqa: BLE001 - any error is a wrong answer here
            return False

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible to expose races
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
            outcomes = list(pool.map(one, range(evaluations)))
    finally:
        sys.setswitchinterval(old_interval)
    return {"threads": threads, "evaluations": evaluations, "wrong": outcomes.count(False)}


def load_backends(only: str | None) -> Iterator[Backend]:
    for label, module_name, factory in BACKEND_FACTORIES:
        if only is not None and label != only:
            continue
        try:
            importlib.import_module(module_name)
        except ImportError as exc:
            print(f"note: skipping {label}: cannot import {module_name} ({exc})")
            continue
        yield factory()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter timing repeats")
    parser.add_argument("--only", help="run a single library label")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    timing = Timing(repeats=3, target_ns=20_000_000) if args.quick else Timing(9, 100_000_000)
    thread_evals = 2_000 if args.quick else 20_000

    activation = make_activation()
    report: dict[str, Any] = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "timing": {"repeats": timing.repeats, "target_ms_per_repeat": timing.target_ns / 1e6},
        "cases": {case.name: case.expr for case in CASES},
        "speed_expressions": SPEED_EXPRESSIONS,
        "libraries": {},
    }
    for backend in load_backends(args.only):
        print(f"== {backend.label} {backend.version()}", flush=True)
        coverage = run_coverage(backend, activation)
        passed = sum(1 for entry in coverage.values() if entry["pass"])
        speed = run_speed(backend, activation, timing)
        entry: dict[str, Any] = {
            "dist": backend.dist,
            "module": backend.module_name,
            "version": backend.version(),
            "notes": backend.notes(),
            "coverage_passed": passed,
            "coverage_total": len(coverage),
            "coverage": coverage,
            "compile_errors": probe_compile_errors(backend),
            "median_us": {name: s.get("end_to_end") for name, s in speed.items()},
            "speed_detail_us": speed,
            "request_all_speed_expressions_us": request_scenario_us(backend, activation, timing),
            "thread_check": thread_check(backend, thread_evals),
        }
        report["libraries"][backend.label] = entry
        failed = [name for name, c in coverage.items() if not c["pass"]]
        print(f"   coverage {passed}/{len(coverage)}; failed: {', '.join(failed) or '-'}")
        for name, s in speed.items():
            if "error" in s:
                print(f"   {name:14s} error: {s['error']['message'][:100]}")
            else:
                print(
                    f"   {name:14s} end-to-end {s['end_to_end']:9.2f} us"
                    f" | preconverted {s['preconverted']:8.2f} us"
                    f" | convert {s['convert_only']:8.2f} us"
                )
        print(f"   one request, all 3 expressions: {entry['request_all_speed_expressions_us']} us")
        print(f"   threads: {entry['thread_check']}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
