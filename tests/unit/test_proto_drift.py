"""The checked-in generated module matches proto/transport.proto."""

from pathlib import Path

from transport.backend import protogen


def test_generated_module_matches_proto(tmp_path: Path) -> None:
    for produced in protogen.generate(tmp_path):
        checked_in = protogen.PACKAGE_DIR / produced.name
        assert checked_in.read_bytes() == produced.read_bytes(), (
            f"{checked_in.name} is stale: run python -m transport.backend.protogen"
        )


def test_packaged_proto_copy_matches() -> None:
    assert (protogen.PACKAGE_DIR / "transport.proto").read_bytes() == protogen.PROTO.read_bytes()
