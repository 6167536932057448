"""Scale-out: Ray workers for independent videos and training shards, and one video split across processes."""
