"""Summarise a py-spy ``--format raw`` profile (collapsed stacks) for BENCHMARKS.md.

``python -m bench.profile_summary FILE [TOP]`` prints the share of samples per gateway thread
(what the thread was started to run: the reader, the batch lane, the alarm lane, ...), the
functions with the most samples of their own (self), and the project's functions with the
most samples including what they call (inclusive). Samples from ``bench.run --profile`` are
taken with ``--gil``: each is the interpreter running Python on that thread.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(.*) \((.*):\d+\)$")


def _frames(stack: str) -> list[str]:
    # "process 1:"...";process 2:"...";f (file.py:12);g (file.py:30)": drop the process part
    # and the line numbers, which split one function into many entries.
    out = []
    for part in stack.split(";"):
        m = _FRAME.match(part)
        if m and not part.startswith("process "):
            out.append(f"{m.group(1)} ({m.group(2)})")
    return out


def summarise(lines: list[str], top: int = 12) -> str:
    threads: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in lines:
        if not line.strip():
            continue
        stack, _, n = line.rpartition(" ")
        count = int(n)
        frames = _frames(stack)
        if not frames:
            continue
        total += count
        entry = next((f for f in frames if "eldercare/" in f), frames[0])
        threads[entry] += count
        self_[frames[-1]] += count
        for f in set(frames):
            if "eldercare/" in f or "bench/" in f:
                incl[f] += count
    out = [f"{total} samples"]
    out.append("per thread (entry function):")
    out += [f"  {n / total:6.1%}  {f}" for f, n in threads.most_common(top)]
    out.append("self:")
    out += [f"  {n / total:6.1%}  {f}" for f, n in self_.most_common(top)]
    out.append("inclusive (project code):")
    out += [f"  {n / total:6.1%}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main() -> int:
    path = Path(sys.argv[1])
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    print(summarise(path.read_text().splitlines(), top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
