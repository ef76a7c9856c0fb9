"""Process plumbing at the bottom of the house: atomic files, staged directories, signals.

  files    a file replaced atomically and durably; a directory built aside and swapped in whole
  signals  SIGINT and SIGTERM as one interrupt, and both held back during short writes

May import only :mod:`archprobe.errors`; every wing may import it.
"""
