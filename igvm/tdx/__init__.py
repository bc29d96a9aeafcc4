"""Intel TDX: MRTD from TDVF metadata or an IGVM file."""
