#!/usr/bin/env python3
"""Run one fuzz target under atheris (coverage-guided), or manage its corpus.

    python tests/fuzz/run.py --list
    python tests/fuzz/run.py TARGET -- -max_total_time=600      # fuzz (libFuzzer flags after --)
    python tests/fuzz/run.py TARGET --seed                      # (re)write the seed inputs into the corpus
    python tests/fuzz/run.py TARGET --merge                     # minimize what a run found into the corpus
    python tests/fuzz/run.py TARGET --replay FILE...            # run inputs once (a crash reproducer)

Fuzzing reads ``tests/fuzz/corpus/TARGET`` and writes new inputs to
``tests/fuzz/work/TARGET`` (not committed); ``--merge`` then replaces the corpus
with the smallest set of inputs that covers what corpus and work cover together. Crashes land in ``tests/fuzz/crashes/``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
WORK = HERE / "work"
CRASHES = HERE / "crashes"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def corpus_dir(name: str) -> Path:
    return CORPUS / name


def write_seeds(name: str) -> int:
    from tests.fuzz.targets import all_targets

    target = all_targets()[name]
    out = corpus_dir(name)
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for seed in target.seeds():
        target.harness(seed)  # a seed must not crash
        digest = hashlib.sha1(seed).hexdigest()
        if not (out / digest).exists():  # libFuzzer names its inputs by their SHA-1
            (out / ("seed-" + digest[:16])).write_bytes(seed)
        n += 1
    return n


def fuzz(name: str, libfuzzer_args: list[str]) -> None:
    import atheris

    # Instrument the project's modules (not Twisted's) as the targets import them.
    from tests.fuzz import targets as registry

    with atheris.instrument_imports(include=["transport", "transport_backends"]):
        found = registry.all_targets()
    if name not in found:
        sys.exit(f"unknown target {name}; see --list")
    target = found[name]
    for d in (corpus_dir(name), WORK / name, CRASHES):
        d.mkdir(parents=True, exist_ok=True)
    # libFuzzer runs argv[0] through the shell for its sub-processes (-merge=1, -fork): make it a command
    # line that names the target again.
    argv0 = f"{sys.executable} {Path(__file__).resolve()} {name} --"
    argv = [argv0, f"-artifact_prefix={CRASHES}/{name}-", *libfuzzer_args]
    dictionary = HERE / "dicts" / f"{name}.dict"
    if dictionary.exists() and not any(a.startswith("-dict=") for a in libfuzzer_args):
        argv.append(f"-dict={dictionary}")
    if not any(not a.startswith("-") for a in libfuzzer_args):
        argv += [str(WORK / name), str(corpus_dir(name))]
    atheris.Setup(argv, target.harness)
    atheris.Fuzz()


def merge(name: str) -> None:
    """Minimize corpus/TARGET + work/TARGET into the smallest set with the same coverage (libFuzzer -merge=1).

    Files named ``regression-*`` (fixed findings) are always kept.
    """
    corpus, work = corpus_dir(name), WORK / name
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"fuzz-merge-{name}-") as tmp:
        subprocess.run([sys.executable, __file__, name, "--", "-merge=1", tmp, str(corpus), str(work)], check=True)
        kept = {p.name for p in Path(tmp).iterdir()}
        if not kept:
            sys.exit(f"{name}: the merge kept nothing; the corpus is left as it was")
        for old in corpus.iterdir():
            if not old.name.startswith("regression-"):
                old.unlink()
        for new in Path(tmp).iterdir():
            shutil.copy(new, corpus / new.name)
    print(f"{name}: {len(kept)} input(s) in {corpus} (+ regression-* files)")


def replay(name: str, files: list[str]) -> None:
    from tests.fuzz.targets import all_targets

    target = all_targets()[name]
    paths = [Path(f) for f in files] or sorted(corpus_dir(name).iterdir())
    for path in paths:
        print(f"{name}: {path}", flush=True)
        target.harness(path.read_bytes())
    print(f"{len(paths)} input(s): no finding")


def main() -> None:
    argv = sys.argv[1:]
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?")
    parser.add_argument("--list", action="store_true", help="list the targets and their contracts")
    parser.add_argument("--seed", action="store_true", help="write the seed inputs into the corpus")
    parser.add_argument("--merge", action="store_true", help="minimize work/TARGET into corpus/TARGET")
    parser.add_argument("--replay", nargs="*", metavar="FILE", help="run inputs (default: the whole corpus)")
    args = parser.parse_args(argv)
    if args.list or not args.target:
        from tests.fuzz.targets import all_targets

        for t in all_targets().values():
            first = t.doc.splitlines()[0] if t.doc else ""
            print(f"{t.name:20} {first}")
        return
    if args.seed:
        print(f"{args.target}: {write_seeds(args.target)} seed(s) in {corpus_dir(args.target)}")
    elif args.merge:
        merge(args.target)
    elif args.replay is not None:
        replay(args.target, args.replay)
    else:
        fuzz(args.target, extra)


if __name__ == "__main__":
    main()
