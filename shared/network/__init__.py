"""The network as the service reaches it for a tenant: which addresses are public, what an address is once unwrapped."""
