"""``python -m nodus.batch MANIFEST --out DIR [--ray auto|ADDRESS|local] [--workers N]``: what
``nodus batch`` runs."""

import argparse
import json
import sys

from . import run


def main(arguments=None):
    parser = argparse.ArgumentParser(prog="nodus batch", description="Run a JSONL manifest of workflow jobs.")
    parser.add_argument("manifest")
    parser.add_argument("--out", required=True, help="the output folder (results.jsonl and one folder per row)")
    parser.add_argument("--ray", metavar="auto|ADDRESS|local",
                        help="run on Ray: auto (this machine's cluster), HOST:PORT of a head, or local (start one)")
    parser.add_argument("--workers", type=int, help="worker processes or Ray actors")
    parser.add_argument("--threads", type=int, help="nodus threads per local worker (default: cores / workers)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    options = parser.parse_args(arguments)
    try:
        summary = run(options.manifest, options.out, engine="ray" if options.ray else "local", workers=options.workers,
                      ray_address=None if options.ray in (None, "local") else options.ray, progress=not options.quiet,
                      threads=options.threads)
    except (ValueError, OSError, ConnectionError, ImportError) as error:
        print(f"nodus batch: error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
