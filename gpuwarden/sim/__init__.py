"""Simulated GPU fleet: topology, workloads, fault injection and a pynvml-compatible API."""
