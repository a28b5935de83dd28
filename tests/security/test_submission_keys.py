"""The submission key: made at first use readable by its owner only, rotated with the old
public key still trusted until it is forgotten, refused when others can read it."""

from __future__ import annotations

import json
import stat

import pytest

from remotelab.keys.signing import (
    PRIVATE_FILE,
    PUBLIC_FILE,
    SignatureInvalid,
    SubmissionKeyError,
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
    with pytest.raises(SubmissionKeyError, match="no retired submission key"):
        forget_key(old_id, tmp_path)


def test_a_private_key_others_can_read_is_refused(tmp_path):
    load_or_make_signer(tmp_path)
    (tmp_path / PRIVATE_FILE).chmod(0o644)
    with pytest.raises(SubmissionKeyError, match="chmod 600"):
        load_or_make_signer(tmp_path)


def test_a_running_worker_trusts_a_key_copied_in_after_a_rotation(tmp_path):
    load_or_make_signer(tmp_path)
    verifier = load_verifier(tmp_path)  # as a worker holds it while it serves
    _old, new_id = rotate_signing_key(tmp_path)
    signed_after = load_or_make_signer(tmp_path).sign(PAYLOAD)
    assert verifier.verify(PAYLOAD, signed_after) == new_id


def test_remotelab_keys_shows_rotates_and_forgets_the_submission_key(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from remotelab.cli import app

    monkeypatch.setenv("REMOTELAB_KEYS_DIR", str(tmp_path / "keys"))
    first = load_or_make_signer().key_id
    runner = CliRunner()
    rotated = runner.invoke(app, ["keys", "rotate-submission"])
    assert rotated.exit_code == 0, rotated.output
    assert f"{first} is retired" in rotated.output
    shown = runner.invoke(app, ["keys", "submission", "--json"])
    listed = {row["key_id"]: row["current"] for row in json.loads(shown.output)["keys"]}
    assert listed == {first: False, load_or_make_signer().key_id: True}
    assert runner.invoke(app, ["keys", "forget-submission", first]).exit_code == 0
    again = runner.invoke(app, ["keys", "forget-submission", first])
    assert again.exit_code == 2 and "no retired submission key" in again.output
