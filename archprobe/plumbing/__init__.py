"""Process plumbing at the bottom of the house: atomic files, staged directories, signals,
stderr filtering.

  files    a file replaced atomically and durably; a directory built aside and swapped in whole
  signals  SIGINT and SIGTERM as one interrupt, and both held back during short writes
  stderr   lines libraries write straight to file descriptor 2, filtered

May import only :mod:`archprobe.errors`; every wing may import it.
"""
