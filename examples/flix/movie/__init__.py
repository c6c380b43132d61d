"""movie: video metadata for presentation (title, synopsis, year, boxshot), batched by ids."""
