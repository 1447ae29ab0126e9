"""BACKEND_CONFIG parsing."""

from transport.core.features import BackendFeatures, parse_backend_config


def test_spectrum_keys():
    f = parse_backend_config("[registration]\nneedPassword=0\nneedRegistration=1\nextraField=server\n"
                             "[features]\nmuc=1\nrawxml=true\nreceipts=0\nsend_buddies_on_login=yes\n"
                             "disable_jid_escaping=1\n")
    assert (f.need_password, f.need_registration, f.extra_fields) == (False, True, ("server",))
    assert (f.muc, f.rawxml, f.receipts, f.send_buddies_on_login, f.disable_jid_escaping) == (
        True, True, False, True, True)
    assert f.raw["features.muc"] == "1"


def test_garbage_is_tolerated():
    f = parse_backend_config("no section\n[features\nmuc\n=1\n\x00\n[features]\nmuc = 1 \n")
    assert f.muc and isinstance(f, BackendFeatures)
    assert parse_backend_config("") == BackendFeatures()
