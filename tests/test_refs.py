"""Reference values: the schema names the bad JSON path, the generator's output always fits, no input crashes."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.built import guest_kernel

from agent.errors import ReportError
from agent.tee import tdx_report
from igvm.reference_values import SCHEMA, Inputs, generate
from launcher.fwgen import make_firmware
from verifier import refs
from verifier.api import verify
from verifier.refs import ReferenceValuesError, validate

DATA = Path(__file__).parent / "data"
GENOA_REPORT = bytes.fromhex((DATA / "snp-genoa-azure.report.hex").read_text())
GENOA_VCEK = (DATA / "snp-genoa-azure.vcek.pem").read_bytes()
GENOA_MEASUREMENT = GENOA_REPORT[0x90:0xC0].hex()
GCP_QUOTE = base64.b64decode((DATA / "tdx-v4-gcp.quote.b64").read_text().strip())
GCP_BODY = tdx_report.parse_quote(tdx_report.trim_padding(GCP_QUOTE)).body
GCP_MRTD = GCP_BODY.mrtd.hex()
DOCS = Path(__file__).resolve().parent.parent / "docs" / "reference-values.md"

# Each raised a traceback (TypeError, AttributeError, ValueError) inside verify() before the schema existed.
MALFORMED = [
    ([], "the document: expected a reference-values object, got an empty list"),
    ({"snp": "x"}, 'snp: expected an object, got "x"'),
    ({"snp": {"measurements": [1]}},
     'snp.measurements[0]: expected an object with "measurement" (96 hex digits), got 1'),
    ({"snp": {"measurements": [{"measurement": "zz" * 48}]}}, "snp.measurements[0].measurement: expected 96 hex"),
    ({"snp": {"measurements": {"measurement": "00" * 48}}}, "snp.measurements: expected a list of"),
    ({"snp": {"guest_policy": "0xzz"}}, 'snp.guest_policy: expected a 64-bit integer or "0x..." hex string'),
    ({"snp": {"guest_policy": [3]}}, "snp.guest_policy: expected"),
    ({"snp": {"minimum_tcb": {"snp": "0x1g"}}}, "snp.minimum_tcb.snp: expected an integer 0..255"),
    ({"snp": {"minimum_tcb": {"snp": 256}}}, "snp.minimum_tcb.snp: expected an integer 0..255, got 256"),
    ({"snp": {"minimum_tcb": [1]}}, "snp.minimum_tcb: expected an object"),
    ({"snp": {"id_key_digests": "00" * 48}}, "snp.id_key_digests: expected a list of 96 hex digits"),
    ({"snp": {"author_key_digests": [None]}}, "snp.author_key_digests[0]: expected 96 hex digits, got null"),
    ({"tdx": {"mrtd": ["00" * 48]}}, "tdx.mrtd: expected an object mapping labels"),
    ({"tdx": {"mrtd": {"single_pass": 7}}}, "tdx.mrtd.single_pass: expected null or 96 hex digits, got 7"),
    ({"tdx": {"xfam": "0xq"}}, "tdx.xfam: expected"),
    ({"tdx": {"xfam": True}}, "tdx.xfam: expected a 64-bit integer"),
    ({"tdx": {"rtmr": [None] * 5}}, "tdx.rtmr: expected a list [rtmr0, rtmr1, rtmr2, rtmr3] (at most 4)"),
    ({"tdx": {"rtmr": {"rtmr1": [1]}}}, "tdx.rtmr.rtmr1[0]: expected 96 hex digits, got 1"),
    ({"tdx": {"rtmr": 5}}, "tdx.rtmr: expected null or an object by register or a list, got 5"),
    ({"tdx": []}, "tdx: expected an object, got an empty list"),
    ({"schema": "cocoon.reference-values/v2"}, 'schema: expected "cocoon.reference-values/v1"'),
    ({"snp": {"minimum_tbc": {"snp": 1}}}, "snp.minimum_tbc: unknown key"),
    ({"snp": {"measurements": [{"measurement": "00" * 48, "vcpu": 2}]}}, "snp.measurements[0].vcpu: unknown key"),
    ({"tdx": {"rtmr": {"rtmr4": []}}}, "tdx.rtmr.rtmr4: unknown key"),
    ({"snp": {"measurements": [{"measurement": "00" * 48, "vcpus": 1.0}]}}, "snp.measurements[0].vcpus"),
]


@pytest.mark.parametrize(("doc", "message"), MALFORMED)
def test_malformed_reference_values_name_the_json_path(doc: Any, message: str) -> None:
    with pytest.raises(ReferenceValuesError) as exc:
        validate(doc)
    assert str(exc.value).startswith(message), str(exc.value)
    for kind, report in (("snp", GENOA_REPORT), ("tdx-quote", GCP_QUOTE)):  # verify() refuses it the same way
        with pytest.raises(ReferenceValuesError, match=r"expected|unknown key"):
            verify(kind, report, b"", doc, vcek_pem=GENOA_VCEK)


def test_python_callers_non_json_values_get_the_same_error() -> None:
    for doc, message in (({"snp": {"measurements": [{"measurement": bytes(48)}]}}, "measurement: expected 96 hex"),
                         ({"snp": {1: 2}}, "snp.1: unknown key"), ({"tdx": {"mrtd": {"a": {1, 2}}}}, "tdx.mrtd.a"),
                         ({"snp": {"measurements": ({"measurement": "00" * 48},)}}, "snp.measurements: expected")):
        with pytest.raises(ReferenceValuesError, match=message):
            validate(doc)


def test_hex_is_normalized_so_upper_case_values_match() -> None:
    doc = {"snp": {"guest_policy": 0x30000, "measurements": [{"measurement": GENOA_MEASUREMENT.upper()}],
                   "id_key_digests": [GENOA_REPORT[0xE0:0x110].hex().upper()]}}
    assert validate(doc)["snp"] == {"guest_policy": "0x30000", "measurements": [{"measurement": GENOA_MEASUREMENT}],
                                    "id_key_digests": [GENOA_REPORT[0xE0:0x110].hex()]}
    assert verify("snp", GENOA_REPORT, b"", doc, vcek_pem=GENOA_VCEK).ok
    assert verify("tdx-quote", GCP_QUOTE, b"", {"tdx": {"mrtd": {"mine": GCP_MRTD.upper()}}}).ok
    assert doc["snp"]["guest_policy"] == 0x30000  # the caller's document is not modified


def test_strict_json_refuses_duplicates_constants_and_depth() -> None:
    assert refs.loads_json('{"snp": {"launch": "x"}}', "t") == {"snp": {"launch": "x"}}
    for text, why in (('{"snp": {}, "snp": {"measurements": []}}', "duplicate key snp"),
                      ('{"tdx": {"xfam": NaN}}', "NaN is not JSON"), ('[Infinity]', "Infinity is not JSON"),
                      ("[" * 100_000, "not valid JSON"), (b"\xff{}", "not valid JSON"), ("{", "not valid JSON"),
                      ('{"a": 1' + "0" * 5000 + "}", "not valid JSON")):
        with pytest.raises(ReferenceValuesError, match=why):
            refs.loads_json(text, "t")


def _generated(tmp_path: Path, kernel: Path | None) -> dict[str, Any]:
    fw = tmp_path / "fw.fd"
    fw.write_bytes(make_firmware(tdvf_sections=[(0x4000, 0x1000, 0xFFFF0000, 0x1000, 0, 1)]))
    if kernel is None:
        kernel = tmp_path / "vmlinuz"
        kernel.write_bytes(b"k" * 5000)  # not PE: TDX's rtmr says "unavailable"
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"i" * 300)
    return generate(Inputs(ovmf=str(fw), kernel=str(kernel), initrd=str(initrd), cmdline="console=ttyS0",
                           rtmr0=["ab" * 48]))


def test_what_the_generator_writes_always_validates_unchanged(tmp_path: Path) -> None:
    docs = [_generated(tmp_path, None), generate(Inputs(ovmf=str(_fw_only(tmp_path))))]
    if (kernel := guest_kernel()) is not None:  # a PE kernel: RTMR1/RTMR2 predicted
        docs.append(_generated(tmp_path, kernel))
    for doc in docs:
        assert doc["schema"] == SCHEMA == refs.SCHEMA
        text = json.dumps(doc)
        assert validate(refs.loads_json(text, "generated")) == doc
    assert "unavailable" in docs[0]["tdx"]["rtmr"] and docs[1]["tdx"]["rtmr"] is None
    if len(docs) == 3:
        assert len(docs[2]["tdx"]["rtmr"]["rtmr1"]) == 2


def _fw_only(tmp_path: Path) -> Path:
    fw = tmp_path / "plain.fd"
    fw.write_bytes(make_firmware(tdvf_sections=[(0x4000, 0x1000, 0xFFFF0000, 0x1000, 0, 1)], hashes_gpa=None))
    return fw


def test_docs_carry_the_schema_table() -> None:
    """docs/reference-values.md shows the table validate() enforces (regenerate: python -m verifier.refs)."""
    text = DOCS.read_text()
    start, end = "<!-- schema-table: python -m verifier.refs -->\n", "<!-- /schema-table -->"
    assert start in text and end in text
    assert text[text.index(start) + len(start) : text.index(end)] == refs.markdown()


# --- property tests ---------------------------------------------------------------------------------------
def _all_keys(spec: refs.Spec) -> set[str]:
    keys: set[str] = set()
    if isinstance(spec, refs.Obj):
        keys |= set(spec.keys)
        for k in spec.keys.values():
            keys |= _all_keys(k.spec)
    for attr in ("inner", "item"):
        if isinstance(getattr(spec, attr, None), refs.Spec):
            keys |= _all_keys(getattr(spec, attr))
    for option in getattr(spec, "options", ()):
        keys |= _all_keys(option)
    return keys


KEYS = sorted(_all_keys(refs.DOCUMENT))
SCALARS = (st.none() | st.booleans() | st.integers(-2, 2**65) | st.floats(allow_nan=False)
           | st.sampled_from(["", "0x30000", "0x", "0xffffffffffffffffff", SCHEMA, GENOA_MEASUREMENT,
                              GENOA_MEASUREMENT.upper(), GCP_MRTD, "00" * 48, "00" * 32, "0" * 95])
           | st.text(max_size=12))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5), max_leaves=24)
GENOA_ONLY = {"measurements": [{"measurement": GENOA_MEASUREMENT}]}
VALID = {"schema": SCHEMA,
         "snp": {"launch": "qemu-ovmf", "guest_policy": "0x30000",
                 "measurements": [{"vcpus": 1, "vcpu_type": "EPYC-Genoa", "vcpu_signature": "0xa10f11",
                                   "guest_features": "0x1", "measurement": GENOA_MEASUREMENT}],
                 "kernel_hashes": None, "minimum_tcb": {"bootloader": 1, "snp": 2},
                 "id_key_digests": [GENOA_REPORT[0xE0:0x110].hex()]},
         "tdx": {"firmware": None, "mrtd": {"single_pass": GCP_MRTD, "two_pass": None},
                 "rtmr": {"rtmr0": [], "rtmr1": [GCP_BODY.rtmr1.hex()]}, "xfam": hex(GCP_BODY.xfam)}}


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return doc


MUTANTS = st.tuples(st.sampled_from(_paths(VALID)), JSON).map(lambda pv: _replace(VALID, *pv))




def _hex(size: int) -> st.SearchStrategy[str]:
    known = [h for h in (GENOA_MEASUREMENT, GCP_MRTD, GCP_BODY.rtmr1.hex()) if len(h) == 2 * size]
    raw = st.binary(min_size=size, max_size=size).map(bytes.hex) | st.sampled_from(known or ["00" * size])
    return st.tuples(raw, st.booleans()).map(lambda t: t[0].upper() if t[1] else t[0])


def from_spec(spec: refs.Spec) -> st.SearchStrategy[Any]:
    """Documents the table admits, built from the table itself (so a new key is generated too)."""
    if isinstance(spec, refs.Hex):
        return _hex(spec.size)
    if isinstance(spec, refs.HexInt):
        n = st.integers(0, (1 << spec.bits) - 1)
        return n | n.map(hex)
    if isinstance(spec, refs.Int):
        return st.integers(spec.low, spec.high)
    if isinstance(spec, refs.Text):
        return st.text(max_size=8)
    if isinstance(spec, refs.Const):
        return st.just(spec.value)
    if isinstance(spec, refs.Nullable):
        return st.none() | from_spec(spec.inner)
    if isinstance(spec, refs.ListOf):
        return st.lists(from_spec(spec.item), max_size=min(3, spec.max_items))
    if isinstance(spec, refs.Either):
        return st.one_of(*(from_spec(o) for o in spec.options))
    assert isinstance(spec, refs.Obj), spec
    if spec.labels is not None:
        return st.dictionaries(st.text(max_size=6), from_spec(spec.labels), max_size=3)
    return st.fixed_dictionaries({k: from_spec(v.spec) for k, v in spec.keys.items() if v.required},
                                 optional={k: from_spec(v.spec) for k, v in spec.keys.items() if not v.required})


def _check_never_crashes(doc: Any) -> None:
    try:
        clean = validate(doc)
    except ReferenceValuesError:
        return
    assert validate(clean) == clean  # normalization is idempotent
    # what the schema admits, the checkers read without an exception, and an allow needs a listed value
    snp = verify("snp", GENOA_REPORT, b"", doc, vcek_pem=GENOA_VCEK)
    listed = {str(m.get("measurement", "")).lower() for m in clean.get("snp", {}).get("measurements", [])}
    assert not snp.ok or GENOA_MEASUREMENT in listed
    tdx = verify("tdx-quote", GCP_QUOTE, b"", doc)
    assert not tdx.ok or GCP_MRTD in {str(v).lower() for v in clean.get("tdx", {}).get("mrtd", {}).values()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_any_json_value_is_a_valid_document_or_the_schemas_error(doc: Any) -> None:
    _check_never_crashes(doc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTANTS)
def test_a_valid_document_with_any_subtree_replaced_never_crashes(doc: Any) -> None:
    _check_never_crashes(doc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(from_spec(refs.DOCUMENT))
def test_every_document_the_table_admits_validates_and_never_crashes_a_check(doc: Any) -> None:
    clean = validate(doc)
    assert json.loads(json.dumps(clean)) == clean
    _check_never_crashes(doc)


def test_a_turin_minimum_on_a_genoa_report_fails_its_claim_not_the_verifier() -> None:
    """Genoa's TCB has no FMC component: a minimum for one fails the claim (found by the property test)."""
    r = verify("snp", GENOA_REPORT, b"", {"snp": {**GENOA_ONLY, "minimum_tcb": {"fmc": 1}}}, vcek_pem=GENOA_VCEK)
    assert {c.name for c in r.failed} == {"snp.tcb.reported", "snp.tcb.committed", "snp.tcb.launch"}


def test_the_valid_document_verifies_both_genuine_pieces_of_evidence() -> None:
    assert verify("snp", GENOA_REPORT, b"", VALID, vcek_pem=GENOA_VCEK).ok
    assert verify("tdx-quote", GCP_QUOTE, b"", VALID).ok
    r = verify("tdx-quote", GCP_QUOTE, b"", _replace(VALID, ("tdx", "xfam"), hex(GCP_BODY.xfam ^ 1)))
    assert {c.name for c in r.failed} == {"tdx.xfam"}


def test_nonce_beyond_what_evidence_binds_is_refused() -> None:
    for nonce in (b"", bytes(65)):
        with pytest.raises(ReportError, match="evidence binds 1 to 64"):
            verify("snp", GENOA_REPORT, b"", VALID, vcek_pem=GENOA_VCEK, nonce=nonce)
