"""Load generation: request payloads, protocol clients, closed and open loop. No pytest import."""
