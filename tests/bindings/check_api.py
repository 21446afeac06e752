#!/usr/bin/env python3
"""Checks that Swift / Kotlin code using the rvoip bindings only names what the generated
bindings declare, with the same argument labels.

    check_api.py swift GENERATED.swift USER.swift|README.md ...
    check_api.py kotlin GENERATED.kt README.md ...

For a Markdown file only the ```swift / ```kotlin blocks are read. Every `name(label: ...)`
call (Swift) or `name(label = ...)` call (Kotlin) of a name the bindings know must match a
declaration `func name(label:` / `init(label:` / `case name(` / constructor, and every
capitalized type name used must be declared. Names the bindings do not mention at all
(print, Date, Task …) are taken to be the language's own. Exit 1 with a list of mismatches.
"""

import re
import sys

SWIFT_STD = {"Sendable", "NSLock", "Date", "Task", "FileHandle", "CommandLine", "Double", "String",
             "UInt64", "UInt32", "UInt16", "Int16", "Bool", "Set", "Options", "Foundation",
             "Printer", "Listener", "Rvoip", "Int"}
KOTLIN_STD = {"Printer", "Any", "Unit", "String", "Exception"}


def top_level(args):
    """args with nested (...) groups removed, so only this call's own labels remain."""
    prev = None
    while prev != args:
        prev, args = args, re.sub(r"\([^()]*\)", "", args)
    return args


def calls(code):
    """Every `name(args)` in code, nested ones included, with args balanced."""
    for m in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", code):
        depth, i = 1, m.end()
        while i < len(code) and depth:
            depth += {"(": 1, ")": -1}.get(code[i], 0)
            i += 1
        yield m.group(1), code[m.end():i - 1]


def blocks(path, lang):
    text = open(path, encoding="utf-8").read()
    if not path.endswith(".md"):
        return [text]
    return re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    src = re.sub(r'"(?:\\.|[^"\\])*"', '""', src)
    return re.sub(r"//[^\n]*", "", src)


def swift_decls(gen):
    funcs = {}
    for m in re.finditer(r"\b(?:func|case)\s+`?(\w+)`?\s*\(([^)]*)\)?", gen):
        labels = re.findall(r"(?:^|,)\s*(?:/\*\*.*?\*/)?\s*(\w+)\s*(?:\w+\s*)?:", m.group(2), re.S)
        funcs.setdefault(m.group(1), []).append(labels)
    inits = {}
    for cls in re.finditer(r"(?:class|struct)\s+(\w+)", gen):
        inits.setdefault(cls.group(1), [])
    # struct memberwise/public inits and convenience inits: map to the enclosing type.
    current = None
    for line in gen.splitlines():
        m = re.match(r"\s*(?:public |open )?(?:class|struct|enum|protocol)\s+(\w+)", line)
        if m:
            current = m.group(1)
        if re.search(r"\binit\s*\(", line) and current:
            inits.setdefault(current, [])
    types = set(re.findall(r"(?:class|struct|enum|protocol)\s+(\w+)", gen))
    return funcs, types, inits


def check_swift(gen_path, users):
    gen = open(gen_path, encoding="utf-8").read()
    funcs, types, _ = swift_decls(strip_comments(gen))
    # Record/object initializer labels, from `public init(` parameter lists per type.
    init_labels = {}
    for m in re.finditer(r"(?:struct|class)\s+(\w+)[^{]*\{(.*?)\n\}", gen, re.S):
        for im in re.finditer(r"init\s*\((.*?)\)\s*(?:throws\s*)?\{", m.group(2), re.S):
            body = re.sub(r"/\*.*?\*/", "", im.group(1), flags=re.S)
            init_labels.setdefault(m.group(1), []).append(re.findall(r"(\w+)\s*:", body))
    bad = []
    for path in users:
        for code in blocks(path, "swift"):
            code = strip_comments(code)
            for name, args in calls(code):
                labels = re.findall(r"(?:^|,)\s*(\w+)\s*:(?!:)", top_level(args))
                if name[0].isupper():
                    if name in SWIFT_STD or name not in types:
                        if name not in SWIFT_STD and name not in types and re.search(r"\b" + name + r"\b", gen) is None and not code.count("class " + name):
                            bad.append(f"{path}: type {name} is not declared by the bindings")
                        continue
                    cands = init_labels.get(name, [])
                    if cands and not any(set(labels) <= set(c) for c in cands):
                        bad.append(f"{path}: {name}({', '.join(l + ':' for l in labels)}) matches no initializer {cands}")
                elif name in funcs:
                    if not any(labels == c[: len(labels)] or set(labels) <= set(c) for c in funcs[name]):
                        bad.append(f"{path}: {name}({', '.join(l + ':' for l in labels)}) matches no declaration {funcs[name]}")
            for t in set(re.findall(r"\b(?:RvoipError|Event|CallState|RegistrationState)\.(\w+)", code)) | \
                    set(re.findall(r"case\s+(?:let\s+)?\.(\w+)", code)):
                if t not in funcs and not re.search(r"case\s+" + t + r"\b", gen):
                    bad.append(f"{path}: case .{t} is not declared by the bindings")
    return bad


def check_kotlin(gen_path, users):
    gen = open(gen_path, encoding="utf-8").read()
    funcs = {}
    for m in re.finditer(r"fun\s+`?(\w+)`?\s*\((.*?)\)\s*[:{=]", gen, re.S):
        funcs.setdefault(m.group(1), []).append(re.findall(r"`?(\w+)`?\s*:", m.group(2)))
    classes = set(re.findall(r"(?:class|interface|object)\s+(\w+)", gen))
    ctor = {}
    for m in re.finditer(r"(?:data\s+)?class\s+(\w+)\s*\((.*?)\)\s*[:{\n]", gen, re.S):
        ctor.setdefault(m.group(1), []).append(re.findall(r"va[rl]\s+`?(\w+)`?\s*:", m.group(2)))
    for m in re.finditer(r"class\s+(\w+)\b.*?constructor\((.*?)\)", gen, re.S):
        pass
    bad = []
    for path in users:
        for code in blocks(path, "kotlin"):
            code = strip_comments(code)
            for name, args in calls(code):
                named = re.findall(r"(?:^|,)\s*(\w+)\s*=(?!=)", top_level(args))
                if name[0].isupper():
                    if name in KOTLIN_STD:
                        continue
                    if name not in classes:
                        bad.append(f"{path}: class {name} is not declared by the bindings")
                    elif ctor.get(name) and named and not any(set(named) <= set(c) for c in ctor[name]):
                        bad.append(f"{path}: {name}({', '.join(named)}) matches no constructor {ctor[name]}")
                elif name in funcs and named:
                    if not any(set(named) <= set(c) for c in funcs[name]):
                        bad.append(f"{path}: {name}({', '.join(named)}) matches no declaration")
            for t in re.findall(r"\b(?:Event|RvoipException|CallState|RegistrationState)\.(\w+)", code):
                if t not in classes and not re.search(r"object\s+" + t + r"\b", gen):
                    bad.append(f"{path}: {t} is not declared by the bindings")
            for prop in re.findall(r"event\.(\w+)", code):
                if not re.search(r"va[lr]\s+`?" + prop + r"`?\s*:", gen):
                    bad.append(f"{path}: property {prop} is not declared by the bindings")
    return bad


def main():
    lang, gen, users = sys.argv[1], sys.argv[2], sys.argv[3:]
    bad = check_swift(gen, users) if lang == "swift" else check_kotlin(gen, users)
    for b in bad:
        print("MISMATCH", b)
    if bad:
        sys.exit(1)
    print(f"check_api {lang}: {len(users)} file(s) match {gen}")


if __name__ == "__main__":
    main()
