#!/usr/bin/env python3
"""Counts the `unsafe { ... }` blocks that wrap a system call, per file.

A block (braces matched, // comments stripped) counts as `libc` when its body
calls a libc function (`libc::name(`), and as `crate` when it calls one of
nix's unsafe wrappers instead (`sigaction(`, `mmap`, `munmap(`, `msync(`) or
borrows a raw descriptor for one (`borrow_raw(`). Usage: count_unsafe.py DIR..."""
import re, sys, pathlib
LIBC = re.compile(r'\blibc::[a-z_][a-z_0-9]*\s*\(')
CRATE = re.compile(r'\b(sigaction|mmap_anonymous|mmap|munmap|msync|borrow_raw)\s*\(')
def blocks(src):
    src = re.sub(r'//[^\n]*', '', src)
    for m in re.finditer(r'\bunsafe\s*\{', src):
        i, depth = m.end(), 1
        while depth and i < len(src):
            depth += {'{': 1, '}': -1}.get(src[i], 0)
            i += 1
        yield src[m.end():i]
tl = tc = 0
print(" libc crate file")
for root in sys.argv[1:]:
    for p in sorted(pathlib.Path(root).rglob('*.rs')):
        bs = list(blocks(p.read_text()))
        l = sum(1 for b in bs if LIBC.search(b))
        c = sum(1 for b in bs if not LIBC.search(b) and CRATE.search(b))
        if l or c:
            print(f"{l:5d} {c:5d} {p}"); tl += l; tc += c
print(f"{tl:5d} {tc:5d} total ({tl + tc} blocks wrap a system call)")
