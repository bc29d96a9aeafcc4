"""AMD SEV-SNP: PAGE_INFO chain, VMSA, kernel-hashes table, ID block."""
