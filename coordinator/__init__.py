"""The coordinator and key broker (issues 21, 22): attest pods against the manifest, issue mesh
identities (as Contrast's coordinator), release secrets only to attested pods (CoCo's KBS protocol).

Runs on the host side of the trust boundary, as a service. May import verifier (the relying party's
checks), generator (the manifest format ``cocoon generate`` writes), agent.protocols and agent's evidence
formats, igvm; agent/ never imports it.

So far the authority core (issue 21, no network yet): seed.py (the secret seed, seed shares, every key
derived from it), ca.py (root CA from the seed, a mesh CA per manifest, mesh certificates), store.py (the
content-addressed state directory with a signed latest pointer), authority.py (SetManifest, GetManifests,
Recover and mesh identities as Contrast's coordinator decides them).
"""
