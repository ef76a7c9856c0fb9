"""Turning results into words, tables and files: the only place that knows headers, units and prose.

  columns   which fields are shown, under which header, in which unit (and derived fields)
  sentences the words of each kind of Note a result carries (machine records use them too)
  notes     every other sentence printed about a result (warnings, conventions, prose)
  frames    results -> machine records, DataFrames and rendered tables
  views     a result as its command prints it: print(result), a notebook's HTML table
  plots     the PNG figures;  document  the report directory;  writers  the output rule
  atlas     the report of a sweep's store (report --from): tables, failures, Pareto fronts

May import every wing below it (errors, units, results, plumbing, zoo, probe, runtime,
analysis, bench, training); nothing below imports it.
"""
