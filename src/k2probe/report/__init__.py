"""Showing what was recorded: terminal tables and lines, run listings, the HTML report."""
