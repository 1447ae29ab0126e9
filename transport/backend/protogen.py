"""Regenerate the Python module for ``proto/transport.proto``.

Run ``python -m transport.backend.protogen`` after editing the .proto. The output
is deterministic for a given grpcio-tools version (pinned in setup.cfg's ``test``
extra), and ``tests/unit/test_proto_drift.py`` fails when the checked-in module
differs from what this produces. A copy of the .proto is shipped inside the
package so that backend authors find it next to the installed code.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / "proto" / "transport.proto"
PACKAGE_DIR = Path(__file__).resolve().parent
OUTPUTS = ("transport_pb2.py", "transport_pb2.pyi")


def generate(out_dir: Path, proto: Path = PROTO) -> list[Path]:
    """Compile *proto* into *out_dir*; return the files written."""
    from grpc_tools import protoc  # test/dev dependency only

    args = [
        "protoc",
        f"-I{proto.parent}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        str(proto),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed for {proto}")
    return [out_dir / name for name in OUTPUTS]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for path in generate(Path(tmp)):
            shutil.copyfile(path, PACKAGE_DIR / path.name)
    shutil.copyfile(PROTO, PACKAGE_DIR / PROTO.name)
    print(f"regenerated {', '.join(OUTPUTS)} and the packaged copy of {PROTO.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
