"""Property tests over the SNP report and certificate-table parsers: no input escapes as anything but a
ReportError, sizes are named for what they are, and whatever ``build`` writes ``parse`` reads back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.errors import ReportError
from agent.tee import certtable, snp_report

NAMES = ("vcek", "vlek", "ask", "ark", "crl")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=0x600).filter(lambda b: len(b) != snp_report.REPORT_SIZE))
def test_any_other_size_is_an_snp_report_of_the_wrong_size(data: bytes) -> None:
    with pytest.raises(ReportError, match=f"^SNP report of the wrong size: {len(data)} bytes is "):
        snp_report.parse(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=snp_report.REPORT_SIZE, max_size=snp_report.REPORT_SIZE))
def test_any_report_sized_input_parses_or_names_its_fault(data: bytes) -> None:
    try:
        rep = snp_report.parse(data)
    except ReportError as exc:
        assert str(exc).startswith("SNP report")
    else:
        assert rep.version in snp_report.SUPPORTED_VERSIONS and rep.signed_bytes == data[:snp_report.SIGNED_SIZE]
        assert rep.signing_key in ("vcek", "vlek", "none", "reserved")


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), st.binary(min_size=1, max_size=300), max_size=5),
       st.integers(0, 64))
def test_cert_table_round_trips_with_any_padding(certs: dict[str, bytes], padding: int) -> None:
    assert certtable.parse(certtable.build(certs) + bytes(padding)) == certs


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(NAMES), st.binary(min_size=1, max_size=64), min_size=1, max_size=5),
       st.data())
def test_cert_table_mutations_parse_or_raise_report_error(certs: dict[str, bytes], data: st.DataObject) -> None:
    table = bytearray(certtable.build(certs))
    for _ in range(data.draw(st.integers(1, 4))):
        table[data.draw(st.integers(0, len(table) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(table)))
    try:
        out = certtable.parse(bytes(table[:cut]))
    except ReportError as exc:
        assert str(exc).startswith("SNP certificate table")
    else:
        assert all(isinstance(v, bytes) and v and len(v) <= cut for v in out.values())
