"""The main screen's layout (Textual CSS), kept in Python so no data file has to be packaged.

Below WIDE_AT columns: a 2-column grid in reading order (80x24 shows GPU, power, memory,
bandwidth, CPU and history at once; processes and profiles scroll into view). From WIDE_AT on:
two columns of telemetry with processes filling the bottom, and profiles & events as a third,
full-height column (the app moves the profiles panel to third place for that).
"""

WIDE_AT = 120

CSS = """
#body { height: 1fr; scrollbar-size-vertical: 1; }
#grid {
    grid-size: 2;
    grid-rows: auto;
    grid-gutter: 0 0;
    height: auto;
}
#processes, #profiles { column-span: 2; }
#grid.-wide {
    grid-size: 3;
    grid-columns: 1fr 1fr 1fr;
    grid-rows: auto auto auto 1fr;
    height: 100%;
    min-height: 36;
}
#grid.-wide #profiles { column-span: 1; row-span: 4; height: 100%; }
#grid.-wide #processes { height: 100%; }
Toast { max-width: 70; }
"""
