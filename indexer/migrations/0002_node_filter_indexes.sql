-- /v1/nodes filtered by region or status and sorted by price (the listing a client shows
-- first): walk that region's or status's price range in order and stop after a page,
-- instead of walking every node by price and reading each row to test the filter.
CREATE INDEX nodes_region_price ON nodes (region, min_output_price, node_id);
CREATE INDEX nodes_status_price ON nodes (status, min_output_price, node_id);
