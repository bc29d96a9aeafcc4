"""The coordinator and key broker (issues 21, 22): attest pods against the manifest, issue mesh
identities (as Contrast's coordinator), release secrets only to attested pods (CoCo's KBS protocol).

Runs on the host side of the trust boundary, as a service. May import verifier (the relying party's
checks), agent.protocols and agent's evidence formats, igvm; agent/ never imports it.
"""
