"""Browser tests of the JupyterLab extension (Chromium driven by Playwright)."""
