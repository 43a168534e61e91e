"""Object storage: the service's store, its key layout, readers, customers' buckets, sources and destinations."""
