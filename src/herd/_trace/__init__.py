"""Traces: every driver call, attempt and server handling as an OpenTelemetry span, the W3C
trace context carried in the call's metadata, and the spans a process keeps for the control
plane (docs/tracing.md)."""
