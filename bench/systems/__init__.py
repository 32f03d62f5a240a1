"""The banks `make bench` puts under the same load: ours and two peers."""
