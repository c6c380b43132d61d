"""Launching the processes of the local cloud: the process wrapper, each process's identity, and
the launchers that become memcached and etcd."""
