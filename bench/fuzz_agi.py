"""Coverage-guided fuzzing of the AGI codec and the call dialog with atheris (libFuzzer).

Run: ``PYTHONPATH=. python bench/fuzz_agi.py -atheris_runs=1000000`` (libFuzzer flags pass
through; ``-max_len=4096`` by default). The targets are in :mod:`bench.fuzz_targets`
(the Hypothesis tests run the same ones); only our modules are instrumented, so the
run stays fast. Prints the inputs run, the time and the peak RSS at the end.
"""

from __future__ import annotations

import atexit
import resource
import sys
import time

import atheris


def main() -> None:
    argv = list(sys.argv)
    if not any(a.startswith("-max_len") for a in argv):
        argv.append("-max_len=4096")
    runs = next((a.split("=", 1)[1] for a in argv if a.startswith("-atheris_runs=")), "?")
    with atheris.instrument_imports(include=["agi", "ivr", "bench"]):
        from bench.fuzz_targets import one_input
    started = time.monotonic()

    def report() -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"fuzz_agi: {runs} inputs, {time.monotonic() - started:.0f} s, peak RSS {peak / 1024:.0f} MiB",
              file=sys.stderr, flush=True)

    atexit.register(report)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
