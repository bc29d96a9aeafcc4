"""A key broker that speaks Trustee's KBS protocol (RCAR, version 0.4.0; issue 22): a pod proves what it runs
and gets the secrets its evidence earns, wrapped to a key that lives only in its TEE.

The flow, one module per step (data flows one way): server.py (HTTP, sessions' cookies, bodies bounded) ->
protocol.py (the JSON shapes, read strictly) -> evidence.py (the primary evidence checked by cocoon's
verifier against reference values and the initdata, REPORT_DATA bound as the protocol says) -> token.py
(an EAR attestation token, ES256) -> policy.py (the resource policy, Rego in regorus, over the token's
claims) -> store.py (resources, written atomically) -> jwe.py (the resource wrapped to the TEE key).
Facts (paths, shapes, error names, the binding rule, EAR claims) are from Trustee and guest-components as
../shared/research/coordinator-kbs.md cites them; the code and text are ours.
"""
