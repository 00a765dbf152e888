"""p2p_prophet: an asynchronous peer-to-peer gossip replicator in the lineage of Prophet."""

__version__ = "0.1.0"
