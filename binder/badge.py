"""Point the README's Binder badge at the repository named in binder/REPOSITORY (one line: owner/name).

The badge's target is this one setting: after publishing the repository, write its GitHub
``owner/name`` into binder/REPOSITORY and run ``python binder/badge.py``.
"""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BADGE = re.compile(r"https://mybinder\.org/v2/gh/[^/\s]+/[^/\s]+/HEAD")


def repository() -> str:
    with open(os.path.join(ROOT, "binder", "REPOSITORY")) as f:
        return f.read().strip()


def main() -> None:
    path = os.path.join(ROOT, "README.md")
    with open(path) as f:
        text = f.read()
    new = BADGE.sub(f"https://mybinder.org/v2/gh/{repository()}/HEAD", text)
    with open(path, "w") as f:
        f.write(new)
    print(f"README badge -> {repository()}")


if __name__ == "__main__":
    main()
