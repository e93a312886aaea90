"""Bridge, veth, IPAM, published ports, DNS (issue 5)."""
