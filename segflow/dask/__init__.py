"""Dask mode's machinery: the cluster and work folder (`cluster`), reading sources co-partitioned by
customer (`reading`), and uniqueness rules across partitions (`repeats`). Importing this package
does not import Dask; its modules do."""

ROW = "_row"  # a row's position in its source, which orders customers and numbers quarantined rows
KEY = "_customer_key"  # a hash of the row's customer id, which places it in a partition
