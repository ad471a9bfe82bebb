"""Tests of the resolver and the yt-dlp downloader."""
