"""The program runtime: parser, interpreter, batch executor, backend catalog, registry and backends."""
