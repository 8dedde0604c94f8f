"""Dataset readers of each task, one module per task; each module's ``FORMATS`` maps a format
name to its reader and sniffer."""
