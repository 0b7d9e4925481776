"""Reading, checking, cleaning and splitting the articles, and writing files safely."""
