"""Meta Graph API: the Send API client and the classes of its errors."""
