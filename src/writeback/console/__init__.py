"""The console: a web page (and JSON API) administrators run writeback from, served by `writeback run`."""
