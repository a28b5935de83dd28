"""The submission key: made at first use readable by its owner only, rotated with the old
public key still trusted until it is forgotten, refused when others can read it."""

from __future__ import annotations

import stat

import pytest

from remotelab.keys.signing import (
    PRIVATE_FILE,
    PUBLIC_FILE,
    SignatureInvalid,
    forget_key,
    load_or_make_signer,
    load_verifier,
    rotate_signing_key,
    trusted_keys,
)

PAYLOAD = {"plan": "measure", "params": {"num": 1}, "role": "researcher"}


def test_a_new_key_pair_is_private_and_signs_what_its_public_key_verifies(tmp_path):
    signer = load_or_make_signer(tmp_path / "keys")
    for name in (PRIVATE_FILE, PUBLIC_FILE):
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    sig = signer.sign(PAYLOAD)
    (tmp_path / "keys" / PRIVATE_FILE).rename(tmp_path / "elsewhere.key")  # a worker host
    assert load_verifier(tmp_path / "keys").verify(PAYLOAD, sig) == signer.key_id
    with pytest.raises(SignatureInvalid, match="changed after the gateway accepted it"):
        load_verifier(tmp_path / "keys").verify({**PAYLOAD, "role": "manager"}, sig)
    with pytest.raises(SignatureInvalid, match="no signature"):
        load_verifier(tmp_path / "keys").verify(PAYLOAD, None)


def test_rotation_keeps_the_old_key_trusted_until_it_is_forgotten(tmp_path):
    old = load_or_make_signer(tmp_path)
    signed_before = old.sign(PAYLOAD)
    old_id, new_id = rotate_signing_key(tmp_path)
    assert old_id == old.key_id != new_id == load_or_make_signer(tmp_path).key_id
    assert load_verifier(tmp_path).verify(PAYLOAD, signed_before) == old_id
    listed = {kid: current for kid, _file, current in trusted_keys(tmp_path)}
    assert listed == {old_id: False, new_id: True}
    forget_key(old_id, tmp_path)
    with pytest.raises(SignatureInvalid, match="does not trust"):
        load_verifier(tmp_path).verify(PAYLOAD, signed_before)
    with pytest.raises(FileNotFoundError, match="no retired submission key"):
        forget_key(old_id, tmp_path)


def test_a_private_key_others_can_read_is_refused(tmp_path):
    load_or_make_signer(tmp_path)
    (tmp_path / PRIVATE_FILE).chmod(0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        load_or_make_signer(tmp_path)
