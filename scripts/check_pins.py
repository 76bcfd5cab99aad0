"""Guards the committed Python pin files against drift.

    python3 scripts/check_pins.py FILE.txt [FILE.txt ...]
    python3 scripts/check_pins.py FILE.txt --python VENV/bin/python [--allow NAME ...]
    python3 scripts/check_pins.py FILE.txt --top FILE.in

Without --python: every line of each file (comments and blank lines aside) must be exactly
``name==version`` (no ranges, no markers, no URLs, no options), each name once.
With --python: additionally, the distributions installed in that interpreter's environment must
be exactly the pinned set, same versions, nothing more and nothing less (pip itself and the names
given with --allow, e.g. the project's own package, excepted). With --top: every pin of that
file of top-level choices (``name[extras]==version``; ``-c``/``-r`` lines are skipped) must be in
the pin files, same version. Several pin files given together must agree on shared names.
Exit status 1 on any difference.
Only the standard library is used, so the check runs with any Python 3.8+.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys

NAME = r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)"
VERSION = r"==([A-Za-z0-9][A-Za-z0-9.+!_-]*)"
LINE = re.compile(f"^{NAME}{VERSION}$")
TOP = re.compile(rf"^{NAME}(?:\[[A-Za-z0-9._,-]+\])?{VERSION}$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str, errors: list[str], line_re: re.Pattern = LINE) -> dict[str, str]:
    pins: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for no, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line_re is TOP and re.match(r"^-[rc]\s", line):
                continue  # a requirements file may name its constraints file (-c) or another (-r)
            m = line_re.match(line)
            if not m:
                errors.append(f"{path}:{no}: not an exact 'name==version' pin: {line!r}")
                continue
            name = canonical(m.group(1))
            if name in pins:
                errors.append(f"{path}:{no}: {m.group(1)} is pinned twice")
            pins[name] = m.group(2)
    if not pins and not errors:
        errors.append(f"{path}: no pins")
    return pins


INSTALLED = (
    "import importlib.metadata as m, json; "
    "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))"
)


def installed(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-c", INSTALLED], check=True, capture_output=True, text=True)
    return {canonical(n): v for n, v in json.loads(out.stdout) if n}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--python", help="compare the environment of this interpreter with the pins")
    ap.add_argument("--allow", action="append", default=[], help="installed name not pinned")
    ap.add_argument("--top", action="append", default=[], help="top-level pins (may have extras)")
    args = ap.parse_args()
    errors: list[str] = []
    pins: dict[str, str] = {}
    for path in args.files:
        for name, version in read_pins(path, errors).items():
            if name in pins and pins[name] != version:
                errors.append(f"{path}: {name}=={version} but {pins[name]} in an earlier file")
            pins[name] = version
    for path in args.top:
        for name, version in read_pins(path, errors, TOP).items():
            if pins.get(name) != version:
                got = f"{name}=={pins[name]}" if name in pins else "no pin"
                errors.append(f"{path}: {name}=={version}, but the pin files have {got}")
    if args.python and not errors:
        have = installed(args.python)
        allowed = {"pip"} | {canonical(a) for a in args.allow}
        for name, version in sorted(pins.items()):
            if name not in have:
                errors.append(f"pinned {name}=={version} is not installed")
            elif have[name] != version:
                errors.append(f"{name}: installed {have[name]}, pinned {version}")
        for name in sorted(set(have) - set(pins) - allowed):
            errors.append(f"{name}=={have[name]} is installed but not pinned")
    for e in errors:
        print("check_pins:", e, file=sys.stderr)
    if not errors:
        what = "installed set equals " if args.python else ""
        print(f"check_pins: {what}{len(pins)} exact pins ({', '.join(args.files)})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
