"""``cocoon kbs``: run the key broker, and administer one.

    cocoon kbs admin-keygen -o admin.pem                     # Ed25519 key pair (admin.pem, admin.pub.pem)
    cocoon kbs serve --state DIR --reference-values out/reference-values.json --admin-key admin.pub.pem
    cocoon kbs put --url http://127.0.0.1:8080 --admin-key admin.pem default/key/db-password secret.txt
    cocoon kbs policy --url http://127.0.0.1:8080 --admin-key admin.pem [policy.rego]
    cocoon kbs seal --signing-key signer.pem --kid kbs:///default/signing-key/1 kbs:///default/key/db-password
    cocoon kbs seal --signing-key signer.pem --kid kbs:///default/signing-key/1 --envelope \
        --key-id kbs:///default/key/kek --kek kek.bin --plaintext secret.txt
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from coordinator.kbs.errors import KbsError, parse_error_body


def _fail(exc: KbsError) -> int:
    print(f"cocoon kbs: error: {exc.detail} ({exc.variant})", file=sys.stderr)
    return 2


def _read_key(path: str, private: bool) -> Any:
    from jwcrypto import jwk

    try:
        key = jwk.JWK.from_pem(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise KbsError("AdminAuthInitialization", f"{path}: not a PEM key: {exc}") from None
    if key.get("kty") != "OKP" or key.get("crv") != "Ed25519" or key.has_private != private:
        raise KbsError("AdminAuthInitialization", f"{path}: not an Ed25519 {'private' if private else 'public'} key")
    return key


def cmd_keygen(args: argparse.Namespace) -> int:
    from jwcrypto import jwk

    key = jwk.JWK.generate(kty="OKP", crv="Ed25519")
    out = Path(args.output)
    pub = out.with_name(out.stem + ".pub.pem")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_to_pem(private_key=True, password=None))
    pub.write_bytes(key.export_to_pem())
    print(f"wrote {out} (keep it) and {pub} (give it to `cocoon kbs serve --admin-key`)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from coordinator.kbs.broker import Broker, Config
    from coordinator.kbs.server import KbsHttpServer
    from verifier import strictjson
    from verifier.refs import validate

    logging.basicConfig(level=logging.INFO, format="cocoon-kbs %(asctime)s %(levelname)s %(message)s")
    try:
        refs = strictjson.loads(Path(args.reference_values).read_bytes())
        validate(refs)
    except (OSError, ValueError) as exc:
        raise KbsError("RvpsError", f"{args.reference_values}: {exc}") from None
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise KbsError("HTTPFailed", f"--listen {args.listen!r} is not HOST:PORT")
    tls = None
    if args.tls_cert or args.tls_key:
        import ssl

        if not (args.tls_cert and args.tls_key):
            raise KbsError("HTTPSFailed", "--tls-cert and --tls-key go together")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            tls.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise KbsError("HTTPSFailed", f"TLS certificate or key: {exc}") from None
    admin = _read_key(args.admin_key, private=False) if args.admin_key else None
    config = Config(Path(args.state), refs, trust_sim=args.trust_sim, session_timeout_s=args.session_timeout,
                    token_lifetime_s=args.token_lifetime)
    broker = Broker(config)
    try:
        server = KbsHttpServer((host, int(port)), broker, admin, tls)
    except OSError as exc:
        raise KbsError("HTTPFailed", f"cannot listen on {args.listen}: {exc.strerror}") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"cocoon kbs: serving {server.url}/kbs/v0 (state {args.state}"
          f"{', sim evidence trusted' if args.trust_sim else ''}{', no admin key' if admin is None else ''})",
          flush=True)
    stop.wait()
    server.stop()
    broker.close()
    return 0


def _admin_call(args: argparse.Namespace, method: str, path: str, body: bytes | None) -> bytes:
    from coordinator.kbs.server import admin_token

    key = _read_key(args.admin_key, private=True)
    request = urllib.request.Request(args.url.rstrip("/") + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {admin_token(key)}",
                                              "Content-Type": "application/json"})
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the broker itself, never a proxy
        with opener.open(request, timeout=args.timeout) as reply:
            return bytes(reply.read())
    except urllib.error.HTTPError as exc:
        variant, detail = parse_error_body(exc.read())
        raise KbsError(variant, detail) from None
    except (urllib.error.URLError, OSError) as exc:
        raise KbsError("HTTPFailed", f"{args.url}: {getattr(exc, 'reason', exc)}") from None


def cmd_put(args: argparse.Namespace) -> int:
    from coordinator.kbs.store import resource_path

    resource_path(args.resource.split("/"))
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise KbsError("HTTPFailed", f"{args.file}: {exc.strerror}") from None
    _admin_call(args, "POST", f"/kbs/v0/resource/{args.resource}", data)
    if args.json:
        print(json.dumps({"resource": args.resource, "bytes": len(data)}))
    else:
        print(f"set {args.resource} ({len(data)} bytes)")
    return 0


def cmd_policy(args: argparse.Namespace) -> int:
    if args.file is None:
        sys.stdout.write(_admin_call(args, "GET", "/kbs/v0/resource-policy", None).decode())
        return 0
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KbsError("ParsePolicyError", f"{args.file}: {exc}") from None
    body = json.dumps({"policy": base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()}).encode()
    _admin_call(args, "POST", "/kbs/v0/resource-policy", body)
    print(f"resource policy set from {args.file}")
    return 0


def _signer(args: argparse.Namespace) -> Any:
    """The Signer of --signing-key and --kid, or None with --unsigned; one of the two is required, so an
    unsigned value (which a guest takes only when its initdata opts out) is never made by accident."""
    from agent.sealed import SealedSecretError, Signer
    from coordinator.kbs.store import resource_path

    if args.unsigned:
        if args.signing_key or args.kid:
            raise SealedSecretError("seal --unsigned takes no --signing-key or --kid")
        return None
    if not args.signing_key or not args.kid:
        raise SealedSecretError("seal takes --signing-key PEM and --kid kbs:///<repo>/<type>/<tag> (where the "
                                "broker holds its public key), or --unsigned")
    if not args.kid.startswith("kbs:///"):
        raise SealedSecretError(f"--kid {args.kid!r} is not kbs:///<repo>/<type>/<tag>")
    resource_path(args.kid.removeprefix("kbs:///").split("/"))
    try:
        pem = Path(args.signing_key).read_bytes()
    except OSError as exc:
        raise SealedSecretError(f"{args.signing_key}: {exc.strerror}") from None
    return Signer.from_pem(pem, args.kid)


class _Served:
    """The broker's part in the guest's unsealing, played with what the command was given (the signer's
    public key, the KEK), so the round trip is checked before the value is printed."""

    def __init__(self, signer: Any, extra: dict[str, bytes] | None = None) -> None:
        self.values = dict(extra or {})
        if signer is not None:
            self.values[signer.kid.removeprefix("kbs:///")] = signer.public_jwk()

    def get_resource(self, path: str) -> bytes:
        from agent.sealed import SealedSecretError

        if path not in self.values:
            raise SealedSecretError(f"the sealed value asks for {path}, which this command was not given")
        return self.values[path]


def cmd_seal(args: argparse.Namespace) -> int:
    """Errors of the value's own (SealedSecretError, an AgentError) reach ``cocoon``'s main as such."""
    from agent.sealed import SealedSecretError, resource_of, seal
    from coordinator.kbs.store import resource_path

    if args.envelope:
        return _seal_envelope(args)
    if args.resource is None or args.key_id or args.kek or args.plaintext:
        raise SealedSecretError("seal takes a resource (vault), or --envelope with --key-id and --kek")
    resource = args.resource.removeprefix("kbs:///")
    resource_path(resource.split("/"))
    signer = _signer(args)
    value = seal(resource, signer=signer)
    # what the guest will read, checked here, not at the pod's start
    if resource_of(value, _Served(signer), allow_unsigned=signer is None) != resource:
        raise SealedSecretError("the sealed value does not name the resource")
    print(value)
    return 0


def _seal_envelope(args: argparse.Namespace) -> int:
    from agent.sealed import KEY_BYTES, Envelope, SealedSecretError, open_secret, parse, seal_envelope
    from coordinator.kbs.store import resource_path

    if args.resource is not None or not args.key_id or not args.kek:
        raise SealedSecretError("seal --envelope takes --key-id kbs:///<repo>/<type>/<tag> and --kek FILE, and no "
                                "resource")
    if not args.key_id.startswith("kbs:///"):
        raise SealedSecretError(f"--key-id {args.key_id!r} is not kbs:///<repo>/<type>/<tag>")
    resource = args.key_id.removeprefix("kbs:///")
    resource_path(resource.split("/"))
    signer = _signer(args)
    source = args.plaintext or "-"
    try:
        kek = Path(args.kek).read_bytes()
        plaintext = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise SealedSecretError(f"{exc.filename or 'stdin'}: {exc.strerror}") from None
    if len(kek) != KEY_BYTES:
        raise SealedSecretError(f"--kek {args.kek}: {len(kek)} bytes, not {KEY_BYTES} (a raw AES-256 key, the "
                                "bytes `cocoon kbs put` stores at the key id)")
    value = seal_envelope(resource, kek, plaintext, signer=signer)
    served = _Served(signer, {resource: kek})
    secret = parse(value, served, signer is None)  # what the guest will do, done here: too large or not
    if not isinstance(secret, Envelope) or secret.resource != resource or \
            open_secret(secret, served) != plaintext:  # opening is said now
        raise SealedSecretError("the sealed value does not open to the plaintext")
    print(value)
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    """A resource as an attested client gets it (Trustee's `kbs-client get-resource`): auth, attest with
    this machine's TEE (sim with --tee sim for tests), the resource decrypted with the in-memory TEE key."""
    from agent.errors import AgentError
    from agent.kbs_client import KbsClient, KbsClientError, KbsConfig
    from agent.tee import open_provider
    from coordinator.kbs.store import resource_path

    resource_path(args.resource.split("/"))
    try:
        cert = Path(args.kbs_cert).read_text() if args.kbs_cert else None
        tee = open_provider(args.tee, sim_config=args.sim_config)
        data = KbsClient(KbsConfig(args.url, cert), tee, timeout=args.timeout).get_resource(args.resource)
    except KbsClientError as exc:
        raise KbsError(exc.variant or "HTTPFailed", str(exc)) from None
    except (AgentError, OSError) as exc:
        raise KbsError("HTTPFailed", str(exc)) from None
    if args.output:
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        print(f"{args.resource}: {len(data)} bytes to {args.output}", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def _guarded(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except KbsError as exc:
            return _fail(exc)
    return run


def register(sub: Any) -> None:
    p = sub.add_parser("kbs", help="the key broker (Trustee's KBS protocol): serve it, administer it",
                       description="A key broker speaking Trustee's KBS protocol (RCAR 0.4.0): pods attest with "
                                   "their TEE's evidence and get resources wrapped to a key of their TEE.")
    ksub = p.add_subparsers(dest="kbs_command", metavar="ACTION")
    ksub.required = True
    k = ksub.add_parser("admin-keygen", help="make the Ed25519 admin key pair")
    k.add_argument("-o", "--output", required=True, help="private key PEM (the public one goes beside it)")
    k.set_defaults(handler=_guarded(cmd_keygen))
    s = ksub.add_parser("serve", help="run the broker until SIGTERM")
    s.add_argument("--state", required=True, help="directory for resources, the policy and the token key")
    s.add_argument("--reference-values", required=True, metavar="FILE",
                   help="cocoon reference values for the guest image (out/reference-values.json)")
    s.add_argument("--trust-sim", metavar="PEM", help="also trust evidence chained to this sim root (tests only)")
    s.add_argument("--admin-key", metavar="PEM", help="the admin's Ed25519 public key (without: no admin API)")
    s.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    s.add_argument("--tls-cert", metavar="PEM")
    s.add_argument("--tls-key", metavar="PEM")
    s.add_argument("--session-timeout", type=int, default=300, metavar="S", help="seconds a session lives (300)")
    s.add_argument("--token-lifetime", type=int, default=300, metavar="S", help="seconds a token is valid (300)")
    s.set_defaults(handler=_guarded(cmd_serve))
    g = ksub.add_parser("get", help="get a resource as an attested client (this machine's TEE evidence)")
    g.add_argument("resource", help="<repo>/<type>/<tag>")
    g.add_argument("--url", required=True, help="the broker, e.g. https://kbs.example:8080")
    g.add_argument("--kbs-cert", metavar="PEM", help="the broker's TLS certificate (https)")
    g.add_argument("--tee", default="auto", help="the TEE whose evidence is sent: auto, snp, tdx, az-snp-vtpm, "
                   "or sim (tests)")
    g.add_argument("--sim-config", metavar="FILE", help="--tee sim: the sim TEE's document")
    g.add_argument("-o", "--output", metavar="FILE", help="write the value here (mode 0600), not to stdout")
    g.add_argument("--timeout", type=float, default=30.0)
    g.set_defaults(handler=_guarded(cmd_get))
    z = ksub.add_parser("seal", help="print a sealed env value (the guest unseals it): a vault value naming a KBS "
                                     "resource, or an envelope holding the secret under a KBS-held key",
                        description="vault: the value names the secret's KBS resource. --envelope: the secret "
                                    "travels in the value, AES-256-GCM under a fresh data key wrapped (RFC 3394) "
                                    "with the 32-byte key stored in the broker at --key-id. Either way the value "
                                    "is a JWS signed with --signing-key (ES256); the guest fetches the public "
                                    "key at --kid from the broker and verifies before reading anything.")
    z.add_argument("resource", nargs="?", help="vault: kbs:///<repo>/<type>/<tag> or <repo>/<type>/<tag>")
    z.add_argument("--envelope", action="store_true", help="seal the secret itself under a key in the broker")
    z.add_argument("--key-id", metavar="URI", help="envelope: kbs:///<repo>/<type>/<tag> of the KEK in the broker")
    z.add_argument("--kek", metavar="FILE", help="envelope: the KEK, 32 raw bytes (as put to the broker)")
    z.add_argument("--plaintext", metavar="FILE", help="envelope: the secret's file, - for stdin (the default)")
    z.add_argument("--signing-key", metavar="PEM", help="EC P-256 private key to sign with (ES256), e.g. from "
                                                        "`openssl genpkey -algorithm EC -pkeyopt "
                                                        "ec_paramgen_curve:P-256`")
    z.add_argument("--kid", metavar="URI", help="kbs:///<repo>/<type>/<tag> where the broker holds the signing "
                                                "key's public half (a PEM public key or JWK), which the guest "
                                                "fetches to verify")
    z.add_argument("--unsigned", action="store_true",
                   help="no signature (alg none): a guest unseals it only when its initdata's cdh.toml sets "
                        "skip_sealed_secret_verification = true")
    z.set_defaults(handler=_guarded(cmd_seal))
    for name, fn, helptext in (("put", cmd_put, "set a resource"), ("policy", cmd_policy,
                                                                    "set (FILE) or print the resource policy")):
        a = ksub.add_parser(name, help=helptext)
        a.add_argument("--url", required=True, help="the broker, e.g. http://127.0.0.1:8080")
        a.add_argument("--admin-key", required=True, metavar="PEM", help="the admin's Ed25519 private key")
        a.add_argument("--timeout", type=float, default=30.0, help="seconds (30)")
        if name == "put":
            a.add_argument("resource", help="<repo>/<type>/<tag>, e.g. default/key/db-password")
            a.add_argument("file", help="the value's file, - for stdin")
            a.add_argument("--json", action="store_true")
        else:
            a.add_argument("file", nargs="?", help="a Rego file with package policy")
        a.set_defaults(handler=_guarded(fn))
