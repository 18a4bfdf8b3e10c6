"""Write the sample clips the Locust file sends (load_tests/clips/*.mp4): real H.264 from the repository's
example photos, the same recipe as run_load's traffic. Committed, so locust needs nothing from this repo.

    .venv/bin/python -m load_tests.write_clips [DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

from load_tests.run_load import make_clips

N = 3


def main(argv: list[str] | None = None) -> None:
    out = Path((argv or sys.argv[1:] or [str(Path(__file__).resolve().parent / "clips")])[0])
    out.mkdir(parents=True, exist_ok=True)
    for i, clip in enumerate(make_clips(N)):
        (out / f"clip{i}.mp4").write_bytes(clip)
        print(f"{out / f'clip{i}.mp4'}: {len(clip)} bytes")


if __name__ == "__main__":
    main()
