"""Reports: the Parquet schemas, the report store, the queries of ``ser report`` and its HTML page."""
