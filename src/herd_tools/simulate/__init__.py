"""`herd simulate`: systems of thousands of instances on virtual time, with herd's own call path
deciding (docs/simulation.md). `vtime` is the virtual-time loop, `model` the simulated instances
and network, `scenarios` the topologies and faults, `report` the table, JSON, plots and sweep."""
