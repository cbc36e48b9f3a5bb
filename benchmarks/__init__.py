"""`make bench`: measurements side by side, outside the product package."""
