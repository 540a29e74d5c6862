#!/usr/bin/env python3
"""The floors of crates/server (docs/ARCHITECTURE.md "Floors"): a module may name modules on
LOWER floors and the files of its own module directory; never a higher floor, never another
module of its own floor.

Reads every .rs file under crates/server/src, finds what each names of its own crate
(`crate::x`, `use crate::{x, y::z}` groups, `super::` that leaves the file's module), and
prints every back-arrow as `file:line: floor N (mod) names floor M (mod)`. Also fails on a
.rs file whose module is on no floor: a new module must be placed. Exit 1 on any finding.
`callgate_server::` (the binary and tests naming the library) is out of scope.

Usage: scripts/floors.py [crate-src-dir]   (python3, standard library only)
"""

import os
import re
import sys

# floor number -> (name, modules). A module is a top-level file `x.rs` or a directory `x/`.
FLOORS = {
    7: ("boot", ["lib", "main", "shutdown", "listen", "metrics_http", "echo_app", "openapi", "hooks_cli", "console"]),
    6: ("ws, api", ["session", "rest_api"]),
    5: ("node", ["node", "handlers"]),
    4: ("features", ["calls", "streams", "xcap"]),
    3: ("sip side, cluster, rooms", ["sip_side", "cluster", "rooms"]),  # the SIP side's single owner (issue 10 item 1); the cluster directory (issue 12)
    2: ("party", ["party", "registry", "admission"]),
    1: ("wire, config", ["wire", "config", "secrets", "supervise", "tls", "netguard", "rest_types"]),
}

FLOOR_OF = {m: n for n, (_, mods) in FLOORS.items() for m in mods}

# Items named as `crate::Item` that are not a module live in lib.rs (or are re-exported there).
ROOT = "lib"


def blank(m):
    """The match with every character but newlines replaced by spaces (keeps line numbers)."""
    return re.sub(r"[^\n]", " ", m.group(0))


def strip_code(text):
    """Source without comments, string and char literals (same length, same lines)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif re.match(r'(b?r)(#*)"', text[i:i + 40]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'(b?r)(#*)"', text[i:])
            close = '"' + m.group(2)
            j = text.find(close, i + len(m.group(0)))
            j = n if j < 0 else j + len(close)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), not a lifetime ('a, 'static).
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'\n])'", text[i:])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(rel):
    """`calls/call.rs` -> ("calls", False); `calls/mod.rs`, `xcap.rs` -> (module, True): True
    when the file is the module's root (its `super` is the crate root)."""
    parts = rel.split("/")
    if len(parts) == 1:
        return parts[0][:-3], True
    return parts[0], len(parts) == 2 and parts[1] == "mod.rs"


def group_heads(body):
    """First path segment of each item of a `{a, b::c, d::{e}}` group."""
    heads, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            heads.append(cur)
            cur = ""
        else:
            cur += ch
    heads.append(cur)
    out = []
    for h in heads:
        h = h.strip()
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", h)
        if m and m.group(0) != "self":
            out.append(m.group(0))
    return out


def after_path(code, pos):
    """Names following `prefix::` at `pos`: one identifier, or each head of a `{...}` group."""
    rest = code[pos:]
    m = re.match(r"\s*\{", rest)
    if m:
        depth, j = 0, m.end() - 1
        while j < len(rest):
            if rest[j] == "{":
                depth += 1
            elif rest[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        return group_heads(rest[m.end():j])
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", rest)
    return [m.group(1)] if m else []


def inline_mod_depths(code):
    """For each offset, how many inline `mod x { ... }` blocks enclose it (as a list of
    (start, end, ) spans)."""
    spans = []
    for m in re.finditer(r"\bmod\s+[A-Za-z_][A-Za-z0-9_]*\s*\{", code):
        depth, j = 0, m.end() - 1
        while j < len(code):
            if code[j] == "{":
                depth += 1
            elif code[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        spans.append((m.end(), j))
    return spans


def names(code, module, is_root, dir_files):
    """(offset, named module) for every crate module this file names outside itself."""
    found = []
    for m in re.finditer(r"(?<![A-Za-z0-9_$])crate\s*::", code):
        for head in after_path(code, m.end()):
            found.append((m.start(), head if head in FLOOR_OF or head in dir_files else ROOT))
    spans = inline_mod_depths(code)
    for m in re.finditer(r"(?<![A-Za-z0-9_:])((?:super\s*::\s*)+)", code):
        ups = m.group(1).count("super")
        inline = sum(1 for a, b in spans if a <= m.start() < b)
        ups -= inline  # each inline module level is left first
        if ups <= 0:
            continue  # still inside this file
        # A subdirectory file's first `super` is its own module (allowed); one more leaves it.
        leaves_module = ups >= 1 if is_root else ups >= 2
        if not leaves_module:
            continue
        for head in after_path(code, m.end()):
            found.append((m.start(), head if head in FLOOR_OF else ROOT))
    return found


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "crates", "server", "src")
    src = os.path.normpath(src)
    problems = []
    files = []
    for root, _, fnames in os.walk(src):
        for f in fnames:
            if f.endswith(".rs"):
                files.append(os.path.relpath(os.path.join(root, f), src).replace(os.sep, "/"))
    for rel in sorted(files):
        module, is_root = module_of(rel)
        shown = os.path.join(os.path.relpath(src), rel)
        if module not in FLOOR_OF:
            problems.append(f"{shown}: module `{module}` is on no floor (place it in FLOORS, scripts/floors.py)")
            continue
        floor = FLOOR_OF[module]
        with open(os.path.join(src, rel), encoding="utf-8") as fh:
            code = strip_code(fh.read())
        seen = set()
        for off, target in names(code, module, is_root, set()):
            if target == module:
                continue
            tfloor = FLOOR_OF[target]
            if tfloor < floor:
                continue
            line = code.count("\n", 0, off) + 1
            if (line, target) in seen:
                continue
            seen.add((line, target))
            problems.append(
                f"{shown}:{line}: floor {floor} ({module}) names floor {tfloor} ({target})"
            )
    for p in problems:
        print(p)
    if problems:
        print(f"floors: {len(problems)} problem(s); the rule and the table: docs/ARCHITECTURE.md \"Floors\"", file=sys.stderr)
        return 1
    print(f"floors: {len(files)} files, every name points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
