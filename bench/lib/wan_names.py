"""Resolve the benchmark's made-up server names (*.bench.test) to 127.0.0.1 in this process.

Importing it is this process's /etc/hosts: TLS clients connect by the name, send it as SNI and
check the server certificate against it, and the system's files stay untouched.
"""
import socket

SUFFIX = ".bench.test"
_getaddrinfo = socket.getaddrinfo


def _resolve(host, *args, **kwargs):
    if isinstance(host, str) and host.endswith(SUFFIX):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _resolve
