"""``bandexa-data``: where the datasets are found, and fetching them into the per-user cache.

Usage::

    bandexa-data list                        # each dataset: found where, or missing
    bandexa-data fetch adult pendigits       # download, check the pinned sha256, cache
    bandexa-data fetch all
    BANDEXA_DATA_URL=/path/to/mirror bandexa-data fetch letter   # from a local mirror

The loaders search ``root=`` > ``$BANDEXA_DATA`` > the per-user cache (``$BANDEXA_CACHE``,
else the platform's user cache folder); ``fetch`` writes to the cache, so the environments
find what it fetched with no setting. MNIST and Fashion-MNIST download with torchvision
(``gym.make("Bandexa/MNIST-v0", download=True)``) and are not listed here.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from bandexa_gym.envs.datafiles import (
    CACHE_ENV_VAR,
    DATA_ENV_VAR,
    CorruptDataError,
    MissingDataError,
    data_cache_dir,
)
from bandexa_gym.envs.downloads import DATASETS, URL_ENV_VAR, fetch, locate

__all__ = ["build_parser", "main"]

PROG = "bandexa-data"
ALL = "all"


def build_parser() -> argparse.ArgumentParser:
    """The ``bandexa-data`` argument parser."""
    names = ", ".join(DATASETS)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="List and fetch the datasets that the bandexa-gym environments read "
        f"({names}). Files are looked for under root=, then ${DATA_ENV_VAR}, then the "
        f"per-user cache (${CACHE_ENV_VAR}, now {data_cache_dir()}); fetch downloads into the "
        "cache and checks each file's pinned sha256.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="where each dataset is found, or that it is missing")
    listing.add_argument(
        "--root", type=Path, default=None, help="a data folder searched first (default: none)"
    )
    fetching = commands.add_parser(
        "fetch",
        help="download datasets into the per-user cache, checking pinned sha256 hashes",
        description="Download datasets into the per-user cache; a file already cached with "
        "the right sha256 is kept, a download with another hash is refused and not stored.",
    )
    fetching.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        choices=[*DATASETS, ALL],
        help=f"datasets to fetch: {names}, or {ALL}",
    )
    fetching.add_argument(
        "--url",
        default=None,
        help=f"a mirror laid out like a data root: a base URL or a local folder (default: "
        f"${URL_ENV_VAR}, else the publishers' addresses)",
    )
    return parser


def _list(root: Path | None) -> int:
    print(f"searched: {'--root, ' if root else ''}${DATA_ENV_VAR}, then the cache")
    print(f"  ${DATA_ENV_VAR} = {os.environ.get(DATA_ENV_VAR) or '(unset)'}")
    print(f"  cache = {data_cache_dir()}")
    width = max(len(name) for name in DATASETS)
    for name in DATASETS:
        found = locate(name, root)
        missing = [entry.path for entry, where in found if where is None]
        folders = sorted(  # the dataset's top folder in each data root it is found in
            {
                str(where.parents[len(entry.path.split("/")) - 2])
                for entry, where in found
                if where is not None
            }
        )
        if not missing:
            status = f"found    {', '.join(folders)}"
        else:
            have = len(found) - len(missing)
            status = (
                f"missing  {'all' if not have else len(missing)} of {len(found)} files"
                f" (e.g. {missing[0]}): run `{PROG} fetch {name}`"
            )
        print(f"{name:<{width}}  {status}")
    return 0


def _fetch(names: Sequence[str], url: str | None) -> int:
    wanted = list(DATASETS) if ALL in names else list(dict.fromkeys(names))
    failed = 0
    for name in wanted:
        try:
            paths = fetch(name, url=url, progress=sys.stderr.isatty())
        except (MissingDataError, CorruptDataError) as err:
            print(f"{PROG}: {name}: {err}", file=sys.stderr)
            failed += 1
            continue
        folders = sorted({str(p.parent) for p in paths})
        print(f"{name}: {len(paths)} files, sha256 checked, in {', '.join(folders)}")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bandexa-data``; returns the exit code.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 when a dataset could not be fetched (the reason on stderr); usage
        errors exit with code 2.
    """
    args = build_parser().parse_args(argv)
    if args.command == "list":
        return _list(args.root)
    return _fetch(args.names, args.url)


if __name__ == "__main__":
    sys.exit(main())
