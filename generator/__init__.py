"""``cocoon generate`` (issue 20): Kubernetes YAML and OCI images in; verity layers, Rego policies,
initdata and a manifest of reference values out (as Contrast's ``generate`` and Kata's genpolicy).

Runs on the host (a developer's machine or CI). May import the guest's formats (agent.initdata,
agent.protocols, agent.policy for checking what it writes), igvm and verifier (reference values),
launcher (layer builders); agent/ never imports it.
"""
