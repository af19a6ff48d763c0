"""Where links come from: Reddit's monthly dump files, the live API (praw), plain URL lists."""
