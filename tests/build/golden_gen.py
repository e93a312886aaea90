"""Regenerate the golden files: ``.venv/bin/python tests/build/golden_gen.py`` (then review the diff)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from kran.build.dockerfile import DockerfileError, parse, to_json  # noqa: E402

GOLDEN = Path(__file__).parent / "golden"


def render(text: str) -> object:
    try:
        return to_json(parse(text))
    except DockerfileError as e:
        return {"error": str(e)}


if __name__ == "__main__":
    for df in sorted(GOLDEN.glob("*.Dockerfile")):
        out = df.with_suffix(".json")
        out.write_text(json.dumps(render(df.read_text()), indent=1, ensure_ascii=False) + "\n")
