"""A real openEO HTTP server on loopback for tests, the demo and benchmarks.

The server (``local_backend.server``) runs openeo-driver's dummy backend in its own virtualenv
(``build/driver-venv``) because openeo-driver pins pystac~=1.8, which conflicts with the openeo client
the provider uses. Everything else here (``launcher``, ``settings``, ``faults``, ``store``) only needs the
standard library (plus ``requests`` for the launcher), so the main virtualenv can start, steer and stop
servers without ever importing openeo_driver.
"""
