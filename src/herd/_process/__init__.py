"""Wiring a process. Importing the package makes `HERD_TLS_DIR` the source of the identity every
driver in the process presents (`identity`), without application code."""

from herd._process import identity as identity
