"""Browser tests: the console in headless Chromium (Debian's package) driven by Playwright."""
