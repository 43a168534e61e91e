"""Jobs and their items: states and moves, the Redis store, listing, uploads, lanes, upkeep, manifests."""
