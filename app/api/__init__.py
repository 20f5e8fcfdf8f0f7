"""HTTP plumbing shared by the domains' endpoints: the fast route of the write operations."""
