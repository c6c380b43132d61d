"""merch: the rows of videos each visitor sees, ranked with MerchableVideo facets."""
