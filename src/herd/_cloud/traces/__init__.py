"""The control plane's traces: the tail rule at the front door, the bounded store of kept
traces, their spans collected from every instance, and the control API's trace methods."""
