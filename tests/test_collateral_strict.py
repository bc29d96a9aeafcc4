"""What is judged is exactly what Intel signed: a PCS body is read strictly (one object, exactly its two
members, no duplicate key at any depth), the signature is checked over the signed member's own bytes and
the object judged is parsed from those bytes. Attack shapes on genuine Intel collateral, then property
tests: mutated genuine bodies give a CollateralError or a verdict a strict reading agrees with."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.tdxgen import World

from verifier import collateral as col
from verifier.claims import Result
from verifier.trust import intel_root

DATA = Path(__file__).resolve().parent / "data"
TCB_BODY = (DATA / "intel-tdx-tcb-info-00a06d080000.json").read_bytes()
QE_BODY = (DATA / "intel-td-qe-identity-2025-10.json").read_bytes()
CHAIN = (DATA / "intel-tcb-signing-chain.pem").read_bytes()
AT = datetime.datetime(2025, 11, 1, tzinfo=datetime.UTC)  # both genuine documents current
LATER = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)  # past their nextUpdate; the forgery says 2099


def split(body: bytes, key: str) -> tuple[str, str]:
    """(signed object text, signature hex) of a genuine body, by Intel's own compact layout."""
    m = re.fullmatch(r'\{"' + key + r'":(\{.*\}),"signature":"([0-9a-f]{128})"\}\n?', body.decode(), re.S)
    assert m, "genuine body not in PCS layout"
    return m.group(1), m.group(2)


SIGNED, SIG = split(TCB_BODY, "tcbInfo")
GENUINE = json.loads(SIGNED)


def forged() -> str:
    doc = json.loads(SIGNED)
    doc["nextUpdate"] = "2099-01-01T00:00:00Z"
    for level in doc["tcbLevels"]:
        level["tcbStatus"] = "UpToDate"
    return json.dumps(doc, separators=(",", ":"))


F = forged()
ATTACKS = {
    # main's code verified the first "tcbInfo" text and judged what json.loads returned: the last one
    "duplicate key": '{"tcbInfo":' + SIGNED + ',"tcbInfo":' + F + ',"signature":"' + SIG + '"}',
    "escaped key spelling": '{"tcbInfo":' + SIGNED + ',"\\u0074cbInfo":' + F + ',"signature":"' + SIG + '"}',
    "nested copy": '{"copy":{"tcbInfo":' + SIGNED + '},"tcbInfo":' + F + ',"signature":"' + SIG + '"}',
    "extra member": '{"tcbInfo":' + SIGNED + ',"signature":"' + SIG + '","tcbInfoOverride":' + F + "}",
    "duplicate key deep inside": '{"tcbInfo":' + SIGNED[:-1] + ',"tcbLevels":[]}' + ',"signature":"' + SIG + '"}',
    "BOM": "\ufeff" + TCB_BODY.decode(),
    "signature with spaces": '{"tcbInfo":' + SIGNED + ',"signature":"' + " ".join(re.findall("..", SIG)) + '"}',
    # these two main already refused (json.loads: "Extra data" / not a dict); kept so they stay refused
    "trailing garbage": TCB_BODY.decode() + ' {"tcbInfo":' + F + "}",
    "non-object": "[" + TCB_BODY.decode() + "]",
}


@pytest.mark.parametrize("shape", sorted(ATTACKS))
def test_attack_shapes_on_genuine_collateral_are_refused(shape: str) -> None:
    with pytest.raises(col.CollateralError):
        col.load(ATTACKS[shape].encode(), QE_BODY, CHAIN)


def test_the_forgery_is_never_judged() -> None:
    """Where main loaded the duplicate, its verdict at 2030 said fresh (the forged 2099); now nothing loads."""
    for shape in ("duplicate key", "escaped key spelling", "nested copy"):
        try:
            c = col.load(ATTACKS[shape].encode(), QE_BODY, CHAIN)
        except col.CollateralError:
            continue
        r = Result("tdx")
        col.check_documents(r, c, intel_root(), LATER)
        assert c.tcb_info == GENUINE and "tdx.collateral.tcb_info.fresh" in {x.name for x in r.failed}, shape


def test_equivalent_spellings_of_the_genuine_body_verify() -> None:
    """Insignificant whitespace and an escaped member name change no signed byte: same object, same verdict."""
    for body in ('{ "tcbInfo" :\n' + SIGNED + ' ,\t"signature" : "' + SIG + '" }\r\n',
                 '{"\\u0074cbInfo":' + SIGNED + ',"signature":"' + SIG + '"}',
                 '{"signature":"' + SIG.upper() + '","tcbInfo":' + SIGNED + "}"):
        c = col.load(body.encode(), QE_BODY, CHAIN)
        assert c.tcb_info_text == SIGNED.encode() and c.tcb_info == GENUINE
        assert col.check_documents(Result("tdx"), c, intel_root(), AT)


def _no_dups(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate")
    return dict(pairs)


def strict_reading(body: bytes, key: str) -> Any:
    """An independent strict reader: the judged object a strict parse of the whole body gives, or None."""
    def bad(name: str) -> Any:
        raise ValueError(name)

    try:
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=_no_dups, parse_constant=bad)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or set(doc) != {key, "signature"} or not isinstance(doc[key], dict):
        return None
    return doc[key]


FRAGMENTS = [b'"tcbInfo":', b'"\\u0074cbInfo":', b",", b"{", b"}", b"[", b"]", b'"', b"\\", b" ", b"\xef\xbb\xbf",
             b"NaN", b"1e999", b"\x00", b"\xff", b'"nextUpdate":"2099-01-01T00:00:00Z",', F.encode(),
             b',"tcbInfo":' + F.encode(), b'"signature":"' + SIG.encode() + b'"', SIGNED.encode()]
edits = st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.floats(0, 1),
                           st.one_of(st.sampled_from(FRAGMENTS), st.binary(min_size=1, max_size=4)),
                           st.integers(1, 40)), min_size=1, max_size=3)


def mutate(body: bytes, ops: list[tuple[str, float, bytes, int]]) -> bytes:
    out = bytearray(body)
    for op, where, data, n in ops:
        i = int(where * len(out))
        if op == "insert":
            out[i:i] = data
        elif op == "delete":
            del out[i : i + n]
        else:
            out[i : i + len(data)] = data
    return bytes(out)


def boundaries(body: bytes, key: str) -> list[int]:
    """Offsets between the outer object's tokens, where an edit leaves the signed bytes alone."""
    n = len(key) + 4  # {"key":
    i = body.index(b',"signature":"')
    return [0, 1, n - 1, n, i, i + 1, i + 12, i + 13, len(body) - 1, len(body)]


BLANKS = [b" ", b"\n", b"\t", b"\r\n", b"  \n "]
splices = st.lists(st.tuples(st.integers(0, 9), st.sampled_from(BLANKS * 3 + FRAGMENTS)), min_size=1, max_size=3)


def check_mutant(genuine_body: bytes, body: bytes, qe: bool) -> str:
    """The property: a CollateralError, a deny, or an allow for exactly the object Intel signed, which a
    strict reading of the mutated body must also give."""
    key = "enclaveIdentity" if qe else "tcbInfo"
    try:
        c = col.load(TCB_BODY, body, CHAIN) if qe else col.load(body, QE_BODY, CHAIN)
    except col.CollateralError:
        return "error"
    r = Result("tdx")
    allowed = col.check_documents(r, c, intel_root(), AT)
    assert all(x.status in ("pass", "fail", "skip") for x in r.claims)
    if allowed:
        judged = c.qe_identity if qe else c.tcb_info
        assert judged == strict_reading(genuine_body, key), "an allow for an object Intel did not sign"
        assert strict_reading(body, key) == judged, "an allow a strict reading of the body would not give"
    return "allow" if allowed else "deny"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits, st.booleans())
def test_mutated_genuine_bodies_fail_closed(ops: list[tuple[str, float, bytes, int]], qe: bool) -> None:
    genuine_body = QE_BODY if qe else TCB_BODY
    check_mutant(genuine_body, mutate(genuine_body, ops), qe)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(splices, st.booleans(), st.booleans())
def test_spliced_genuine_bodies_fail_closed(ops: list[tuple[int, bytes]], qe: bool, upper: bool) -> None:
    """Edits between the outer tokens: blanks keep the signed bytes (an allow, of Intel's object), anything
    else is refused; an upper-case signature is the same signature."""
    genuine_body = QE_BODY if qe else TCB_BODY
    key = "enclaveIdentity" if qe else "tcbInfo"
    body = bytearray(genuine_body.rstrip(b"\n"))
    if upper:
        at = body.index(b',"signature":"') + 14
        body[at : at + 128] = body[at : at + 128].upper()
    points = boundaries(bytes(body), key)
    for where, data in sorted(ops, key=lambda op: -op[0]):  # right to left: earlier offsets stay put
        body[points[where] : points[where]] = data
    outcome = check_mutant(genuine_body, bytes(body), qe)
    if all(data in BLANKS for _, data in ops):
        assert outcome == "allow", bytes(body)


# --- signed but odd content: a World signs whatever it is given, so only the judging code stands -------------
INT_FIELDS = ("svn", "pcesvn", "isvsvn", "isvprodid")
json_values = st.recursive(st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=False)
                           | st.text(max_size=6), lambda kids: st.lists(kids, max_size=3)
                           | st.dictionaries(st.text(max_size=4), kids, max_size=3), max_leaves=6)


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, (*prefix, i))
    return out


WORLD = World()
TCB_PATHS, QE_PATHS = paths(WORLD.tcb_info), paths(WORLD.qe_identity)


def judged_ok(r: Result) -> bool:
    """No collateral claim failed (the quote's own claims, e.g. an MRTD with no reference, are not at issue)."""
    return not [c for c in r.failed if c.name.startswith(("tdx.collateral", "tdx.tcb", "tdx.qe_identity"))]


def test_the_world_is_consistent() -> None:
    assert judged_ok(WORLD.verify())


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans(), st.integers(0, 10_000), json_values)
def test_signed_odd_content_never_raises_and_never_loosens(qe: bool, pick: int, value: Any) -> None:
    import copy

    w = copy.copy(WORLD)
    doc = copy.deepcopy(WORLD.qe_identity if qe else WORLD.tcb_info)
    path = (QE_PATHS if qe else TCB_PATHS)[pick % len(QE_PATHS if qe else TCB_PATHS)]
    node = doc
    for step in path[:-1]:
        node = node[step]
    original = node[path[-1]]
    node[path[-1]] = value
    if qe:
        w.qe_identity = doc
    else:
        w.tcb_info = doc
    try:
        r = w.verify()  # any exception but CollateralError (Infinity is not JSON) fails the test
    except col.CollateralError:
        return
    if path[-1] in INT_FIELDS and isinstance(original, int) and type(value) is not int:
        assert not judged_ok(r), f"{path} = {value!r} (not an integer) was accepted"


def int_paths(obj: Any) -> list[tuple[Any, ...]]:
    return [p for p in paths(obj) if p[-1] in INT_FIELDS]


@pytest.mark.parametrize("value", ["1", 1.0, True, None, -1])
def test_every_signed_integer_of_the_wrong_type_is_refused(value: Any) -> None:
    """Each integer the checks read, in every level (matched or not), replaced by a non-integer: rejected."""
    import copy

    for qe in (False, True):
        for path in int_paths(WORLD.qe_identity if qe else WORLD.tcb_info):
            w = copy.copy(WORLD)
            doc = copy.deepcopy(WORLD.qe_identity if qe else WORLD.tcb_info)
            node = doc
            for step in path[:-1]:
                node = node[step]
            node[path[-1]] = value
            if qe:
                w.qe_identity = doc
            else:
                w.tcb_info = doc
            assert not judged_ok(w.verify()), (path, value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.builds(lambda a, b: b'{"tcbInfo":' + a + b',"signature":' + b + b"}",
                           st.binary(max_size=40), st.binary(max_size=140))))
def test_any_bytes_load_or_raise_collateral_error(body: bytes) -> None:
    try:
        c = col.load(body, QE_BODY, CHAIN)
    except col.CollateralError:
        return
    assert isinstance(c.tcb_info, dict) and len(c.tcb_info_sig) == 64


def test_deep_nesting_is_a_collateral_error() -> None:
    deep = b'{"tcbInfo":{"a":' + b"[" * 200_000 + b"]" * 200_000 + b'},"signature":"' + SIG.encode() + b'"}'
    with pytest.raises(col.CollateralError):
        col.load(deep, QE_BODY, CHAIN)
