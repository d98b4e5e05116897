"""The bounded environment-repair loop.

An attempt tries one EnvSpec (build the image, run the tests). When it fails, the next spec
comes from the log by rules (swelego.sandbox.envrepair: missing module → package, missing header
→ -dev package, Python too new → older base, ...), then from specs that already repaired this
repository, then from an OpenAI-compatible model
that sees the failing spec, the stage, the log excerpt and the repository's build files, and
answers with a corrected spec as JSON. Every attempt — including an unusable reply — is
recorded with its spec, outcome, error, log tail, failure kind (envrepair.FAILURE_KINDS) and the
model's reply, and the number of attempts is capped."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from swelego.errors import SwelegoError
from swelego.sandbox.envrepair import classify_failure, rule_repair
from swelego.sandbox.envspec import PYTHONS, EnvSpec

CONTEXT_FILES = ("pyproject.toml", "setup.cfg", "setup.py", "tox.ini", "pytest.ini", "requirements.txt")


class EnvFailure(SwelegoError):
    """An environment did not work: `stage` is build | tests | install, `log` an excerpt."""

    def __init__(self, stage: str, message: str, log: str = ""):
        self.stage = stage
        self.message = message
        self.log = log
        super().__init__(f"{stage}: {message}")


@dataclass
class Attempt:
    number: int
    spec: dict
    ok: bool
    stage: str  # ok | build | install | tests | repair (no usable spec came back)
    error: str = ""
    log: str = ""
    source: str = "inferred"  # inferred | rule | known (a spec that repaired another task) | llm
    reply: str = ""  # the model's answer that produced this spec (for a rule: the rule's name)
    seconds: float = 0.0
    kind: str = ""  # why it failed: one of envrepair.FAILURE_KINDS ("" when it worked)

    def __post_init__(self):
        if not self.ok and not self.kind and self.stage != "repair":
            self.kind = classify_failure(self.stage, self.error, self.log)

    def to_json(self) -> dict:
        return asdict(self)


def log_excerpt(log: str, lines: int = 60, chars: int = 6000) -> str:
    """The part of a build or test log that explains a failure: pytest's ERRORS/FAILURES
    sections when present, and the tail."""
    all_lines = log.splitlines()
    start = next((i for i, ln in enumerate(all_lines) if re.match(r"^=+ (ERRORS|FAILURES) =+$", ln.strip())), None)
    head = all_lines[start:start + lines] if start is not None else []
    tail = all_lines[-20:] if head else all_lines[-lines:]
    text = "\n".join(head + (["..."] if head else []) + tail)
    return text[-chars:]


def repo_context(tree: Path, max_chars: int = 1500) -> str:
    tree = Path(tree)
    parts = [f"top-level files: {', '.join(sorted(p.name for p in tree.iterdir() if p.name != '.git'))}"]
    for name in CONTEXT_FILES:
        f = tree / name
        if f.is_file():
            parts.append(f"--- {name} ---\n{f.read_text(errors='replace')[:max_chars]}")
    return "\n".join(parts)


def repair_prompt(spec: EnvSpec, failure: EnvFailure, context: str) -> str:
    current = spec.build_fields()
    return (
        "You repair the test environment of a Python repository. The environment is a Debian image with "
        "a virtualenv; the repository is installed at /testbed, editable, together with the dependencies "
        "its metadata declares. The build has no network: every package must be listed in extra_deps "
        "(downloaded as wheels beforehand); setup commands run in /testbed after the install.\n\n"
        f"Current spec:\n```json\n{json.dumps(current, indent=2)}\n```\n\n"
        f"It failed at the {failure.stage} stage: {failure.message}\n\n"
        f"Log excerpt:\n```\n{failure.log}\n```\n\n"
        f"Repository:\n{context}\n\n"
        "Reply with the corrected spec only, as one JSON object with the keys python (one of "
        f"{', '.join(sorted(PYTHONS))}), extra_deps (list of pip requirement strings), setup (list of shell "
        "commands), test_cmd (a pytest command with -rfEsxXp or -rA, so that every test's outcome is printed) and "
        "log_parser (keep parse_log_pytest for pytest)."
    )


def parse_spec(reply: str, current: EnvSpec) -> EnvSpec:
    """The first JSON object in `reply`, checked and merged over `current`; raises SwelegoError
    saying what is wrong with it."""
    decoder = json.JSONDecoder()
    data: Any = None
    for m in re.finditer(r"\{", reply):
        try:
            data, _ = decoder.raw_decode(reply[m.start():])
            break
        except ValueError:
            continue
    if not isinstance(data, dict):
        raise SwelegoError("the reply holds no JSON object")
    fields = current.build_fields()
    for key in ("python", "extra_deps", "setup", "test_cmd", "log_parser"):
        if key in data:
            fields[key] = data[key]
    python = str(fields["python"])
    if python not in PYTHONS:
        raise SwelegoError(f"python {python!r} is not available (choose from {', '.join(sorted(PYTHONS))})")
    for key in ("extra_deps", "setup"):
        if not isinstance(fields[key], list) or not all(isinstance(x, str) for x in fields[key]):
            raise SwelegoError(f"{key} must be a list of strings")
    for dep in fields["extra_deps"]:
        try:
            Requirement(dep)
        except InvalidRequirement:
            raise SwelegoError(f"extra_deps entry {dep!r} is not a pip requirement") from None
    if not isinstance(fields["test_cmd"], str) or not fields["test_cmd"].strip():
        raise SwelegoError("test_cmd must be a non-empty string")
    from swebench.harness.log_parsers import PARSER_REGISTRY

    if fields["log_parser"] not in PARSER_REGISTRY:
        raise SwelegoError(f"log_parser {fields['log_parser']!r} is not a swebench parser")
    return EnvSpec(python=python, extra_deps=tuple(dict.fromkeys(fields["extra_deps"])),
                   setup=tuple(fields["setup"]), test_cmd=fields["test_cmd"].strip(),
                   log_parser=fields["log_parser"], evidence={**current.evidence, "repair": "proposed by the LLM"})


def repair_loop(spec: EnvSpec, attempt: Callable[[EnvSpec], Any], *, llm=None, max_attempts: int = 3,
                context: str = "", known: Iterable[EnvSpec] = (), failed: EnvFailure | None = None,
                tree: Path | None = None, rules: bool = True) -> tuple[Any, EnvSpec, list[Attempt]]:
    """Try `spec`, then repaired specs, at most `max_attempts` times in all.

    `attempt(spec)` returns a result or raises EnvFailure. `failed` says `spec` was already
    tried and how it failed (recorded as attempt 1). Repairs come from the log by rules
    first (`rules`; `tree` is the repository, to tell its own modules from missing ones),
    then from `known` specs, then from `llm`. Returns (result or None, the last spec tried,
    the attempts)."""
    attempts: list[Attempt] = []
    tried = {json.dumps(spec.build_fields(), sort_keys=True)}
    queue = [k for k in known if json.dumps(k.build_fields(), sort_keys=True) not in tried]
    current, source, reply = spec, "inferred", ""
    last = failed
    if failed is not None:
        attempts.append(Attempt(1, spec.to_json(), False, failed.stage, failed.message, failed.log))
    while len(attempts) < max_attempts:
        n = len(attempts) + 1
        t0 = time.monotonic()
        if last is not None:
            ruled = rule_repair(current, last.stage, f"{last.message}\n{last.log}", tree) if rules else None
            if ruled is not None and json.dumps(ruled[0].build_fields(), sort_keys=True) not in tried:
                current, source, reply = ruled[0], "rule", ruled[1]
            elif queue:
                current, source, reply = queue.pop(0), "known", ""
            elif llm is None:
                break
            else:
                source, reply = "llm", ""
                try:
                    reply = llm.complete([{"role": "user", "content": repair_prompt(current, last, context)}],
                                         temperature=0.2)
                    proposal = parse_spec(reply, current)
                except SwelegoError as e:
                    attempts.append(Attempt(n, current.to_json(), False, "repair", str(e).splitlines()[0][:300],
                                            source="llm", reply=reply,
                                            seconds=time.monotonic() - t0))
                    continue
                key = json.dumps(proposal.build_fields(), sort_keys=True)
                if key in tried:
                    attempts.append(Attempt(n, proposal.to_json(), False, "repair", "the model proposed a spec "
                                            "that was already tried", source="llm", reply=reply,
                                            seconds=time.monotonic() - t0))
                    continue
                current = proposal
            tried.add(json.dumps(current.build_fields(), sort_keys=True))
        try:
            result = attempt(current)
        except EnvFailure as f:
            attempts.append(Attempt(n, current.to_json(), False, f.stage, f.message, f.log, source, reply,
                                    time.monotonic() - t0))
            last = f
            continue
        attempts.append(Attempt(n, current.to_json(), True, "ok", source=source, reply=reply,
                                seconds=time.monotonic() - t0))
        return result, current, attempts
    return None, current, attempts
