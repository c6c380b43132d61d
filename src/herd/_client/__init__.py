"""The client side of a call: driver, balancing, retries, breakers (private; use `herd`)."""
