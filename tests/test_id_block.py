"""SNP ID block / ID auth: layout and key digests against sev-snp-measure, deterministic signatures."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sevsnpmeasure import id_block as ssm_id

from igvm import file as igf
from igvm.defs import PlatformType
from igvm.errors import InputError
from igvm.file import make
from igvm.snp import id_block as idb

LD = bytes(range(48))


def _key(path: Path, curve: ec.EllipticCurve | None = None) -> Path:
    key = ec.generate_private_key(curve or ec.SECP384R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return _key(tmp_path / "id.pem"), _key(tmp_path / "author.pem")


def test_matches_sev_snp_measure(keys: tuple[Path, Path]) -> None:
    id_path, author_path = keys
    theirs = ssm_id.snp_calc_id_block(LD, str(id_path), str(author_path))
    fields = dict(line.split(": ", 1) for line in theirs.splitlines()[1:])
    their_block = base64.b64decode(theirs.split("id-block=")[1].split(",")[0])
    their_auth = base64.b64decode(theirs.split("id-auth=")[1].splitlines()[0])
    signed = idb.make(idb.IdBlock(LD), idb.load_key(str(id_path)), idb.load_key(str(author_path)))
    assert signed.block == their_block
    assert base64.b64encode(signed.id_key_digest).decode() == fields["id_key_hash"]
    assert base64.b64encode(signed.author_key_digest or b"").decode() == fields["author_key"]
    # identical apart from the (randomised on their side) signatures
    for lo, hi in ((0x0, 0x40), (0x240, 0x680), (0x880, 0x1000)):
        assert signed.auth[lo:hi] == their_auth[lo:hi], hex(lo)
    idb.verify(signed)


def test_deterministic_and_tamper_evident(keys: tuple[Path, Path]) -> None:
    id_key, author_key = (idb.load_key(str(p)) for p in keys)
    one = idb.make(idb.IdBlock(LD, policy=0x30000), id_key, author_key)
    two = idb.make(idb.IdBlock(LD, policy=0x30000), id_key, author_key)
    assert one == two
    other = idb.make(idb.IdBlock(LD, policy=0x70000), id_key, author_key)
    assert other.block_sig != one.block_sig
    forged = idb.SignedIdBlock(other.block, one.auth, one.id_key_digest, one.author_key_digest, one.block_sig,
                               one.id_key_sig, one.id_key, one.author_key)
    with pytest.raises(InputError, match="ID block signature"):
        idb.verify(forged)


def test_rejects_wrong_curve(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="P-384"):
        idb.load_key(str(_key(tmp_path / "p256.pem", ec.SECP256R1())))
    with pytest.raises(InputError, match="cannot load"):
        idb.load_key(str(tmp_path / "missing.pem"))


def test_igvm_header_round_trip(keys: tuple[Path, Path]) -> None:
    block = idb.IdBlock(LD, family_id=b"F" * 16, image_id=b"I" * 16, guest_svn=3)
    signed = idb.make(block, idb.load_key(str(keys[0])), idb.load_key(str(keys[1])))
    headers = [make("SUPPORTED_PLATFORM", compatibility_mask=1, platform_type=PlatformType.SEV_SNP,
                    platform_version=1),
               make("SNP_ID_BLOCK", None, **idb.igvm_fields(signed, block, 1))]
    parsed = igf.read(igf.to_bytes(headers)).headers[1]
    assert parsed["ld"] == LD and parsed["guest_svn"] == 3 and parsed["author_key_enabled"] == 1
    # the IGVM key has an extra reserved u32 after the curve; the PSP key does not
    assert b"\x02\0\0\0" + parsed.blob("id_public_key_qx") + parsed.blob("id_public_key_qy") == signed.id_key[:148]


def test_cli_id_block(keys: tuple[Path, Path]) -> None:
    out = subprocess.run([sys.executable, "-m", "cocoon", "igvm", "id-block", "--measurement", LD.hex(),
                          "--id-key", str(keys[0]), "--json"], capture_output=True, text=True, check=True)
    assert '"id_key_digest"' in out.stdout
    assert idb.key_digest(idb.load_key(str(keys[0]))).hex() in out.stdout
