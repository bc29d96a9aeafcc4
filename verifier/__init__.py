"""cocoon's relying-party verifier: SNP and TDX evidence against reference values and initdata.

``verifier.api.verify`` is what ``cocoon verify`` calls and what an aTLS
client can call before it sends anything; every check is a named claim with
expected and actual values, so a failure says which claim and why.
"""
