"""Reports on a corpus: its likeness to WebText, the funnel plots, eval-set contamination."""
