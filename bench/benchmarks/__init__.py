"""asv benchmark suite of flexcmh_fast (configuration: bench/asv.conf.json)."""
