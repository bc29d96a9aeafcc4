"""cocoon's measurement core: IGVM files, SEV-SNP and TDX launch measurements.

Pure functions from bytes to digests, one module per structure (the way
sev-snp-measure is laid out), so an auditor can read each against its spec.
"""
