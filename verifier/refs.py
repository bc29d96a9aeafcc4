"""Reference values as the verifier reads them: one declarative table drives validation and the docs.

``cocoon reference-values`` (igvm/reference_values.py) writes the document;
a relying party may add constraints to it by hand (``minimum_tcb``,
``id_key_digests``, ``xfam``...). verifier/snp.py and verifier/tdx.py then
read it as trusted structure. So every key either of them reads, and every
key the generator writes, is declared once in ``DOCUMENT`` below with its
type; ``validate`` walks a document against it before any check runs and
names the JSON path of the first value that does not fit
(``snp.measurements[0]: expected an object with "measurement" (96 hex
digits), got 1``). ``markdown()`` renders the same table for
docs/reference-values.md, and a test keeps the two equal.

Unknown keys are rejected, not ignored: a misspelt constraint
(``minimum_tbc``) would otherwise be silently skipped and the relying party
would believe it applied. The one free-form map is ``tdx.mrtd``, whose keys
are labels for alternative MRTDs.

``validate`` returns a normalized copy (hex digits lower-case; policy-like
integers, given as JSON integers or "0x..." strings, always as "0x..."
strings), so what the checkers compare is what the table promised them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from agent.errors import AgentError
from verifier import strictjson

SCHEMA = "cocoon.reference-values/v1"  # igvm.reference_values.SCHEMA (verifier/ does not import igvm/)
_HEX = re.compile(r"[0-9a-fA-F]*")
_HEXINT = re.compile(r"0[xX][0-9a-fA-F]{1,64}")


class ReferenceValuesError(AgentError):
    """A reference-values document (or a JSON input) that does not fit its schema: one line, exit 2."""


def _got(value: Any) -> str:
    """A short, shallow, ASCII rendering of what was found (never recurses into a hostile document)."""
    if isinstance(value, dict):
        keys = ", ".join(_key(k) for k in list(value)[:5]) + (", ..." if len(value) > 5 else "")
        return f"an object with keys {keys}" if value else "an empty object"
    if isinstance(value, list):
        return f"a list of {len(value)}" if value else "an empty list"
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):  # a Python caller's non-JSON value (bytes, a set...)
        text = ascii(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(key: Any) -> str:
    if not isinstance(key, str):
        return ascii(key)[:40]
    return strictjson.name(key)


def _join(path: str, key: str) -> str:
    return f"{path}.{_key(key)}" if path else _key(key)


def _fail(path: str, what: str, value: Any) -> ReferenceValuesError:
    return ReferenceValuesError(f"{path or 'the document'}: expected {what}, got {_got(value)}")


class Spec:
    """One node of the schema: ``check`` returns the normalized value or raises naming ``path``."""

    what = "a value"
    json_type: tuple[type, ...] = ()

    def check(self, value: Any, path: str) -> Any:
        raise NotImplementedError

    def rows(self, path: str) -> Iterator[tuple[str, str]]:
        """(JSON path, type) rows for the docs: containers list their members."""
        yield path, self.what


@dataclass(frozen=True)
class Hex(Spec):
    """Exactly ``size`` bytes as hex digits (either case; lower-case after validation)."""

    size: int

    @property
    def what(self) -> str:  # type: ignore[override]
        return f"{2 * self.size} hex digits"

    json_type = (str,)

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, str) or len(value) != 2 * self.size or not _HEX.fullmatch(value):
            raise _fail(path, self.what, value)
        return value.lower()


@dataclass(frozen=True)
class HexInt(Spec):
    """An unsigned integer of ``bits`` bits: a JSON integer or a "0x..." string (written back as the string)."""

    bits: int

    @property
    def what(self) -> str:  # type: ignore[override]
        return f'a {self.bits}-bit integer or "0x..." hex string'

    json_type = (str, int)

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, bool):
            raise _fail(path, self.what, value)
        if isinstance(value, str) and _HEXINT.fullmatch(value):
            number = int(value, 16)
        elif isinstance(value, int):
            number = value
        else:
            raise _fail(path, self.what, value)
        if not 0 <= number < 1 << self.bits:
            raise _fail(path, self.what, value)
        return f"{number:#x}"


@dataclass(frozen=True)
class Int(Spec):
    """A JSON integer within [low, high] (booleans and floats are not integers here)."""

    low: int
    high: int
    describe: str = ""

    @property
    def what(self) -> str:  # type: ignore[override]
        return self.describe or f"an integer {self.low}..{self.high}"

    json_type = (int,)

    def check(self, value: Any, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or not self.low <= value <= self.high:
            raise _fail(path, self.what, value)
        return value


@dataclass(frozen=True)
class Text(Spec):
    what = "a string"
    json_type = (str,)

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, str):
            raise _fail(path, self.what, value)
        return value


@dataclass(frozen=True)
class Const(Spec):
    value: str

    @property
    def what(self) -> str:  # type: ignore[override]
        return json.dumps(self.value)

    json_type = (str,)

    def check(self, value: Any, path: str) -> Any:
        if value != self.value:
            raise _fail(path, self.what, value)
        return value


@dataclass(frozen=True)
class Nullable(Spec):
    inner: Spec

    @property
    def what(self) -> str:  # type: ignore[override]
        return f"null or {self.inner.what}"

    @property
    def json_type(self) -> tuple[type, ...]:  # type: ignore[override]
        return (type(None), *self.inner.json_type)

    def check(self, value: Any, path: str) -> Any:
        if value is None:
            return None
        if not isinstance(value, self.inner.json_type) or isinstance(value, bool):
            raise _fail(path, self.what, value)  # the wrong shape altogether: say null was an option
        return self.inner.check(value, path)

    def rows(self, path: str) -> Iterator[tuple[str, str]]:
        inner = list(self.inner.rows(path))
        yield path, f"null or {inner[0][1]}"
        yield from inner[1:]


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec
    max_items: int = 4096
    describe: str = ""

    @property
    def what(self) -> str:  # type: ignore[override]
        if self.describe:
            return self.describe
        return f"a list of {self.item.what}" + (f" (at most {self.max_items})" if self.max_items < 4096 else "")

    json_type = (list,)

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, list) or len(value) > self.max_items:
            raise _fail(path, self.what, value)
        return [self.item.check(v, f"{path}[{i}]") for i, v in enumerate(value)]

    def rows(self, path: str) -> Iterator[tuple[str, str]]:
        yield path, self.what if not isinstance(self.item, Obj) else "a list of objects"
        if isinstance(self.item, Obj):
            yield from list(self.item.rows(f"{path}[]"))[1:]


@dataclass(frozen=True)
class Either(Spec):
    """One of several shapes, chosen by JSON type so the error comes from the shape the value tried to be."""

    options: tuple[Spec, ...]
    describe: str = ""

    @property
    def what(self) -> str:  # type: ignore[override]
        return self.describe or " or ".join(o.what for o in self.options)

    @property
    def json_type(self) -> tuple[type, ...]:  # type: ignore[override]
        return tuple(t for o in self.options for t in o.json_type)

    def check(self, value: Any, path: str) -> Any:
        for option in self.options:
            if isinstance(value, option.json_type) and not isinstance(value, bool):
                return option.check(value, path)
        raise _fail(path, self.what, value)

    def rows(self, path: str) -> Iterator[tuple[str, str]]:
        yield path, self.what
        for option in self.options:
            yield from list(option.rows(path))[1:]


@dataclass(frozen=True)
class Key:
    spec: Spec
    doc: str
    required: bool = False


@dataclass(frozen=True)
class Obj(Spec):
    """A JSON object with declared keys (others rejected), or a map of free labels to ``labels`` values."""

    keys: dict[str, Key] = field(default_factory=dict)
    labels: Spec | None = None
    describe: str = ""

    @property
    def what(self) -> str:  # type: ignore[override]
        if self.describe:
            return self.describe
        if self.labels is not None:
            return f"an object mapping labels to {self.labels.what}"
        return "an object"

    json_type = (dict,)

    def check(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict) or any(k not in value for k, key in self.keys.items() if key.required):
            raise _fail(path, self.what, value)
        out = {}
        for name, item in value.items():
            where = _join(path, name)
            if name in self.keys:
                out[name] = self.keys[name].spec.check(item, where)
            elif self.labels is not None:
                out[name] = self.labels.check(item, where)
            else:
                known = ", ".join(self.keys)
                raise ReferenceValuesError(f"{where}: unknown key (known here: {known}); a misspelt constraint "
                                           "would be silently ignored, so unknown keys are refused")
        return out

    def rows(self, path: str) -> Iterator[tuple[str, str]]:
        yield path, self.what
        for name, key in self.keys.items():
            sub = list(key.spec.rows(_join(path, name)))
            yield sub[0][0], sub[0][1] + (" (required)" if key.required else "") + f": {key.doc}"
            yield from sub[1:]
        if self.labels is not None:
            yield from self.labels.rows(f"{path}.<label>")


HEX_INT64 = HexInt(64)
SHA256 = Hex(32)
SHA384 = Hex(48)
FILE_REF = Nullable(Obj({
    "path": Key(Text(), "base name of the file", required=True),
    "sha256": Key(SHA256, "SHA-256 of its contents", required=True),
    "size": Key(Int(0, 2**63 - 1, "a non-negative integer"), "size in bytes", required=True),
}, describe='an object with "path", "sha256" and "size"'))
RTMR_VALUE = Nullable(Either((SHA384, ListOf(SHA384)), "96 hex digits or a list of them"))
TCB = Int(0, 255)

SNP = Obj({
    "launch": Key(Text(), '"qemu-ovmf" or "qemu-ovmf-kernel-hashes": how the measurements were computed'),
    "guest_policy": Key(HEX_INT64, "the launch policy; a report's SMT bit and ABI version are judged against it "
                        '(default "0x30000")'),
    "measurements": Key(ListOf(Obj({
        "measurement": Key(SHA384, "launch digest; a report's MEASUREMENT must equal one entry's", required=True),
        "vcpus": Key(Int(1, 2**32 - 1, "a positive integer"), "vCPU count it was computed for"),
        "vcpu_type": Key(Text(), "QEMU CPU model it was computed for"),
        "vcpu_signature": Key(HexInt(32), "CPUID signature of that model"),
        "guest_features": Key(HEX_INT64, "VMSA SEV_FEATURES it was computed with"),
    }, describe='an object with "measurement" (96 hex digits)')), "accepted launch measurements"),
    "kernel_hashes": Key(Nullable(Obj({
        "kernel_sha256": Key(SHA256, "kernel", required=True),
        "initrd_sha256": Key(SHA256, "initrd", required=True),
        "cmdline_sha256": Key(SHA256, "command line", required=True),
    }, describe='an object with "kernel_sha256", "initrd_sha256" and "cmdline_sha256"')),
        "what the firmware's kernel-hashes table bound (informative)"),
    "minimum_tcb": Key(Obj({name: Key(TCB, f"minimum {label} SVN") for name, label in (
        ("bootloader", "boot loader"), ("tee", "PSP OS"), ("snp", "SNP firmware"), ("microcode", "microcode"),
        ("fmc", "FMC (Turin)"))}), "REPORTED_TCB, COMMITTED_TCB and LAUNCH_TCB must be at least these"),
    "id_key_digests": Key(ListOf(SHA384), "accepted ID_KEY_DIGESTs (SHA-384 of the ID block's key)"),
    "author_key_digests": Key(ListOf(SHA384), "accepted AUTHOR_KEY_DIGESTs; the launch must have used one"),
})

TDX = Obj({
    "firmware": Key(FILE_REF, "the TDVF image measured"),
    "mrtd": Key(Obj(labels=Nullable(SHA384)), "accepted MRTDs by label (single_pass: QEMU >= 9, two_pass: "
                "QEMU 8.x); null entries are ignored"),
    "rtmr": Key(Nullable(Either((
        Obj({**{f"rtmr{i}": Key(RTMR_VALUE, f"RTMR{i} candidates") for i in range(4)},
             "boot": Key(Text(), "the boot path the prediction assumes"),
             "unavailable": Key(Text(), "why no prediction was made")}, describe="an object by register"),
        ListOf(RTMR_VALUE, max_items=4, describe="a list [rtmr0, rtmr1, rtmr2, rtmr3] (at most 4) of candidates")),
        "an object by register or a list")), "RTMR candidates: an empty or null register is skipped"),
    "xfam": Key(HEX_INT64, "the XFAM a quote must carry exactly (optional)"),
})

# TPM PCRs (Azure vTPM evidence, verifier/az_snp_vtpm.py), named as trustee's claims name them ("pcr00".."pcr23").
TPM = Obj({
    "pcrs": Key(Obj({f"pcr{i:02}": Key(ListOf(SHA256), f"accepted SHA-256 values of PCR {i}") for i in range(24)}),
                "a PCR named here must hold one of its values and be covered by the quote"),
})

DOCUMENT = Obj({
    "schema": Key(Const(SCHEMA), "absent in hand-written documents; any other value is refused"),
    "inputs": Key(Obj({
        "ovmf": Key(FILE_REF, "firmware"),
        "kernel": Key(FILE_REF, "kernel (null without --kernel)"),
        "initrd": Key(FILE_REF, "initrd"),
        "cmdline": Key(Nullable(Text()), "kernel command line"),
    }), "what the values were computed from (informative)"),
    "snp": Key(SNP, "AMD SEV-SNP values"),
    "tdx": Key(TDX, "Intel TDX values"),
    "tpm": Key(TPM, "vTPM values (az-snp-vtpm evidence)"),
}, describe="a reference-values object")


def validate(document: Any) -> dict[str, Any]:
    """The document, normalized, if it fits ``DOCUMENT``; ReferenceValuesError naming the first bad path."""
    return DOCUMENT.check(document, "")  # type: ignore[no-any-return]


def loads_json(text: str | bytes, what: str) -> Any:
    """JSON from outside: duplicate keys and NaN/Infinity refused (readers disagree on them), one-line errors."""
    try:
        return strictjson.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ReferenceValuesError(f"{what} is not valid JSON: {exc}") from None


def read_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ReferenceValuesError(f"cannot read {what} {path}: {exc.strerror}") from None
    return loads_json(data, f"{what} {path}")


def load(path: str) -> dict[str, Any]:
    """Read, parse strictly and validate a reference-values file."""
    doc = read_json(path, "reference values")
    try:
        return validate(doc)
    except ReferenceValuesError as exc:
        raise ReferenceValuesError(f"reference values {path}: {exc}") from None


def markdown() -> str:
    """The schema table for docs/reference-values.md (between its ``schema-table`` markers)."""
    lines = ["| key | type and meaning |", "| --- | --- |"]
    for path, text in list(DOCUMENT.rows(""))[1:]:
        lines.append(f"| `{path}` | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"



if __name__ == "__main__":  # python -m verifier.refs: the table for docs/reference-values.md
    print(markdown(), end="")
