"""Supervision: every process of the local cloud fills a slot that is kept filled (restarted,
backed off when it keeps crashing), and server groups are slots fitted to a desired count."""
