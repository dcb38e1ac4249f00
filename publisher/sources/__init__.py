"""Sources: the only code that reads article files or upstream feeds."""
